//! The smart-city example project: it loads, its world expands as the scenario says, and its
//! graph is consistent.

use std::collections::BTreeMap;

use ktwin_model::project::{LoadOptions, Project};

fn load(neighborhoods: u64) -> Project {
    let options = LoadOptions {
        parameters: BTreeMap::from([("neighborhoods".to_owned(), neighborhoods)]),
    };
    Project::load_with(ktwin_testkit::example_project(), &options).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn interfaces_have_the_original_names_and_services() {
    let project = load(1);
    for name in [
        "city-pole",
        "ngsi-ld-city-airqualityobserved",
        "s4city-city-neighborhood",
        "ngsi-ld-city-noiselevelobserved",
        "ngsi-ld-city-weatherobserved",
        "ngsi-ld-city-crowdflowobserved",
        "ngsi-ld-city-trafficflowobserved",
        "ngsi-ld-city-streetlight",
        "ngsi-ld-city-offstreetparking",
        "ngsi-ld-city-onstreetparking",
        "ngsi-ld-city-parkingspot",
        "ngsi-ld-city-evchargingstation",
        "ngsi-ld-city-device",
    ] {
        assert!(
            project.interface(name).is_some(),
            "missing interface {name}"
        );
    }
    let pole = project.interface("city-pole").unwrap();
    assert_eq!(
        pole.spec.extends_interface.as_deref(),
        Some("s4city-city-cityfurniture")
    );
    assert!(pole.spec.service.is_some());
    assert_eq!(
        project.services["city-pole"]
            .command
            .last()
            .map(String::as_str),
        Some("pole")
    );
    // Defaults are applied under each service.
    let scaling = pole
        .spec
        .service
        .as_ref()
        .unwrap()
        .auto_scaling
        .as_ref()
        .unwrap();
    assert_eq!(scaling.max_scale, Some(20));
    // Several `extends`: sensors are environment observations and pole-mounted equipment.
    let aq = project
        .interface("ngsi-ld-city-airqualityobserved")
        .unwrap();
    assert_eq!(
        aq.spec.parents(),
        vec!["ngsi-ld-city-environmentbasemodel", "city-polemounted"]
    );
    assert!(aq.spec.event_store.as_ref().unwrap().persist_real_event);
    assert!(
        project
            .interface_graph
            .relationship("ngsi-ld-city-airqualityobserved", "citypole")
            .is_some()
    );
    // Noise has no behaviour of its own, so no service.
    assert!(
        project
            .interface("ngsi-ld-city-noiselevelobserved")
            .unwrap()
            .spec
            .service
            .is_none()
    );
    let neighborhood = project.interface("s4city-city-neighborhood").unwrap();
    assert_eq!(neighborhood.spec.commands[0].name, "updateairqualityindex");
}

#[test]
fn world_expands_per_neighborhood_as_the_scenario_says() {
    for n in [1, 3] {
        let project = load(n);
        // The neighborhood; per pole the pole, 6 sensors and 4 batteries (air quality, noise,
        // weather, streetlight); the parking; 20 spots with a battery each; the EV station.
        let per_neighborhood = 1 + 50 * (1 + 6 + 4) + 1 + 20 * 2 + 1;
        assert_eq!(project.instances.len() as u64, 1 + n * per_neighborhood);
        let count = |iface: &str| {
            project
                .instances
                .iter()
                .filter(|i| i.spec.interface == iface)
                .count() as u64
        };
        assert_eq!(count("city-pole"), 50 * n);
        assert_eq!(count("ngsi-ld-city-streetlight"), 50 * n);
        assert_eq!(count("ngsi-ld-city-airqualityobserved"), 50 * n);
        assert_eq!(count("ngsi-ld-city-parkingspot"), 20 * n);
        assert_eq!(count("ngsi-ld-city-evchargingstation"), n);
        assert_eq!(count("ngsi-ld-city-device"), (50 * 4 + 20) * n);
        let problems = project.instance_graph.problems(&project.interface_graph);
        assert!(problems.is_empty(), "{problems:?}");
    }
}

#[test]
fn instance_names_match_what_the_services_expect() {
    let project = load(1);
    let g = &project.instance_graph;
    let pole = g.get("city-pole-nb001-p00007").expect("pole");
    assert_eq!(pole.interface, "city-pole");
    let out = g.outgoing("city-pole-nb001-p00007");
    assert!(
        out.iter()
            .any(|r| r.name == "refNeighborhood" && r.instance == "s4city-city-neighborhood-nb001")
    );
    assert!(out.iter().any(|r| r.name == "refAirQualityObserved"
        && r.instance == "ngsi-ld-city-airqualityobserved-nb001-p00007"));
    let named = |instance: &str| {
        let mut out: Vec<(String, String)> = g
            .outgoing(instance)
            .iter()
            .map(|r| (r.name.clone(), r.instance.clone()))
            .collect();
        out.sort();
        out
    };
    let pair = |name: &str, instance: &str| (name.to_owned(), instance.to_owned());
    assert_eq!(
        named("ngsi-ld-city-airqualityobserved-nb001-p00007"),
        [
            pair("citypole", "city-pole-nb001-p00007"),
            pair("refDevice", "ngsi-ld-city-device-aqo-nb001-p00007"),
        ]
    );
    assert_eq!(
        named("ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001"),
        [
            pair("refDevice", "ngsi-ld-city-device-nb001-ofp0001-s0001"),
            pair(
                "refOffStreetParking",
                "ngsi-ld-city-offstreetparking-nb001-ofp0001"
            ),
        ]
    );
    // Batteries are leaves: the device interface declares no relationship back.
    assert!(named("ngsi-ld-city-device-wo-nb001-p00007").is_empty());
    // 50 poles, the off-street parking and the city point at the neighborhood.
    assert_eq!(
        g.incoming("s4city-city-neighborhood-nb001").len(),
        50 + 1 + 1
    );
}

#[test]
fn twenty_neighborhoods_expand_and_validate_against_the_crd() {
    let project = load(20);
    assert_eq!(project.instances.len(), 1 + 20 * 593);
    // Every instance but the city has a relationship from its parent and one back, except the
    // 220 batteries per neighborhood, which have none back.
    assert_eq!(
        project.instance_graph.relationship_count(),
        2 * 20 * 593 - 20 * 220
    );
    let json = serde_json::to_string(&project.instance_graph.to_json()).unwrap();
    assert!(json.len() > 1_000_000, "graph JSON is {} bytes", json.len());

    let (_, yaml) = ktwin_model::output::crd_files()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "dtd.ktwin_twininstances.yaml")
        .unwrap();
    let crd: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let validator =
        jsonschema::validator_for(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
            .unwrap();
    for inst in project.instances.iter().step_by(97) {
        let value = serde_json::to_value(inst).unwrap();
        assert!(validator.is_valid(&value), "{value}");
    }
}

/// A copy of the example's project file, edited, in a temporary directory whose `models` and
/// `world` point back at the example.
fn broken_project(edit: impl Fn(&str) -> String) -> Result<Project, ktwin_model::ProjectError> {
    let dir = tempfile::tempdir().unwrap();
    let original =
        std::fs::read_to_string(ktwin_testkit::example_project().join("ktwin.yaml")).unwrap();
    let models = ktwin_testkit::example_project().join("models");
    let world = ktwin_testkit::example_project().join("world.yaml");
    let text = original
        .replace(
            "models: [models]",
            &format!("models: [\"{}\"]", models.display()),
        )
        .replace(
            "world: world.yaml",
            &format!("world: \"{}\"", world.display()),
        );
    std::fs::write(dir.path().join("ktwin.yaml"), edit(&text)).unwrap();
    Project::load(dir.path())
}

/// An edit of the project file text.
type ProjectEdit = dyn Fn(&str) -> String;

#[test]
fn bad_projects_name_the_file_and_field() {
    broken_project(|t| t.to_owned()).expect("the unedited copy loads");
    let cases: [(&ProjectEdit, &str); 4] = [
        (
            &|t| t.replace("  city-pole:\n", "  city-poles:\n"),
            "services.city-poles",
        ),
        (
            &|t| t.replace("persistRealEvent: true", "persistRealEvents: true"),
            "unknown field",
        ),
        (
            &|t| {
                t.replace("    command: [cargo, run, --release, --quiet, -p, ktwin-smart-city-services, --bin, pole]\n", "    aggregateData: [refBogus]\n")
            },
            "refBogus",
        ),
        (
            &|t| t.replace("name: smart-city", "name: Smart_City"),
            "name",
        ),
    ];
    for (edit, needle) in cases {
        let err = broken_project(edit).unwrap_err().to_string();
        assert!(err.contains("ktwin.yaml"), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
