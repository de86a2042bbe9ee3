//! Expanding the smart-city world (20 neighborhoods) and rendering its graph JSON.
//!
//! `cargo bench -p ktwin-model --bench world`

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use ktwin_model::InstanceGraph;
use ktwin_model::project::{LoadOptions, Project};
use ktwin_model::world::{ExpandOptions, World};

fn bench(c: &mut Criterion) {
    let project = Project::load_with(ktwin_testkit::example_project(), &LoadOptions::default())
        .expect("example project loads");
    let world_text =
        std::fs::read_to_string(ktwin_testkit::example_project().join("world.yaml")).unwrap();
    let world = World::from_yaml(&world_text, "world.yaml").unwrap();
    let options = ExpandOptions {
        parameters: BTreeMap::from([("neighborhoods".to_owned(), 20)]),
        ..Default::default()
    };
    let instances = world.expand(&project.interface_graph, &options).unwrap();
    let json = serde_json::to_string(&InstanceGraph::from_instances(&instances).to_json()).unwrap();
    eprintln!(
        "20 neighborhoods: {} instances, graph JSON {} bytes",
        instances.len(),
        json.len()
    );

    c.bench_function("expand 20 neighborhoods", |b| {
        b.iter(|| world.expand(&project.interface_graph, &options).unwrap())
    });
    c.bench_function("expand 20 neighborhoods + graph + JSON", |b| {
        b.iter(|| {
            let instances = world.expand(&project.interface_graph, &options).unwrap();
            let graph = InstanceGraph::from_instances(&instances);
            serde_json::to_string(&graph.to_json()).unwrap()
        })
    });
    c.bench_function(
        "load smart-city project (compile DTDL + expand 1 neighborhood)",
        |b| {
            b.iter(|| {
                Project::load_with(ktwin_testkit::example_project(), &LoadOptions::default())
                    .unwrap()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
