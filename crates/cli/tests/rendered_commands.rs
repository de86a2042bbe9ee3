//! Every container the platform renders to run the `ktwin` image runs a real command: its args
//! plus the variables the platform sets parse with the very `ktwin` parser the image runs, and
//! every variable the platform sets is read by that command (no typo'd or dead variable).
//!
//! Covered: the install bundle, the Helm chart (rendered with its defaults), the smart-city plan
//! (twin services, event store, dispatchers) with either event-store backend, and a Gateway.

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use ktwin::Cli;
use ktwin_model::crd::{Gateway, GatewaySpec, GatewayTls};
use ktwin_operator::install::{DEFAULT_OPERATOR_NAMESPACE, InstallValues, install_bundle};
use ktwin_operator::manifests::load_project;
use ktwin_operator::render::{Discovered, render_plan};
use ktwin_planner::{DEFAULT_IMAGE, KtwinConfig};
use serde_json::{Value, json};

/// A container running the `ktwin` image: where it comes from, its args and variables.
struct Container {
    origin: String,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
}

fn containers_of(origin: &str, objects: &[Value], image_prefix: &str) -> Vec<Container> {
    let mut out = Vec::new();
    for object in objects {
        let spec = match object["kind"].as_str() {
            Some("Deployment" | "StatefulSet") => &object["spec"]["template"]["spec"],
            Some("Service") if object["apiVersion"] == "serving.knative.dev/v1" => {
                &object["spec"]["template"]["spec"]
            }
            _ => continue,
        };
        for container in spec["containers"].as_array().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            if !image.starts_with(image_prefix) {
                continue;
            }
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            };
            let env = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_owned(),
                        e["value"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            out.push(Container {
                origin: format!(
                    "{origin}: {} {}",
                    object["kind"].as_str().unwrap(),
                    object["metadata"]["name"].as_str().unwrap()
                ),
                args: strings(&container["args"]),
                env,
            });
        }
    }
    out
}

/// The subcommand `args` selects, and every (env, long flag) of its arguments.
fn flags_of(args: &[String]) -> BTreeMap<String, String> {
    let mut command = Cli::command();
    let mut flags = BTreeMap::new();
    for arg in args {
        match command.find_subcommand(arg) {
            Some(sub) => command = sub.clone(),
            None => break,
        }
    }
    for argument in command.get_arguments() {
        if let (Some(env), Some(long)) = (argument.get_env(), argument.get_long()) {
            flags.insert(env.to_string_lossy().into_owned(), long.to_owned());
        }
    }
    flags
}

/// Expands `$(VAR)` references as the kubelet does, with `x` for every referenced variable.
fn expand(value: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut referenced = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(')').map(|e| e + start).unwrap();
        referenced.push(rest[start + 2..end].to_owned());
        out.push('x');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, referenced)
}

fn check(container: &Container) {
    let flags = flags_of(&container.args);
    let mut argv = vec!["ktwin".to_owned()];
    argv.extend(container.args.iter().cloned());
    let mut referenced = BTreeSet::new();
    for (_, value) in &container.env {
        if let Some(value) = value {
            referenced.extend(expand(value).1);
        }
    }
    for (name, value) in &container.env {
        match flags.get(name) {
            Some(long) => {
                // Secret values are unknown here; any text stands for them.
                let value = value
                    .as_deref()
                    .map(|v| expand(v).0)
                    .unwrap_or("secret".into());
                argv.push(format!("--{long}"));
                argv.push(value);
            }
            None => assert!(
                referenced.contains(name),
                "{}: variable {name} is read by no argument of `ktwin {}`",
                container.origin,
                container.args.join(" ")
            ),
        }
    }
    if let Err(err) = Cli::try_parse_from(&argv) {
        panic!(
            "{}: `{}` does not parse:\n{err}",
            container.origin,
            argv.join(" ")
        );
    }
}

fn smart_city_objects(config: &KtwinConfig, database: bool) -> Vec<Value> {
    let mut input = load_project(&ktwin_testkit::example_project(), None, true).unwrap();
    if database {
        input.event_stores[0].spec.database =
            serde_json::from_value(json!({"secretKeyRef": {"name": "ktwin-event-store-database"}}))
                .unwrap();
    }
    let mut gateway = Gateway::new("front-door", GatewaySpec::default());
    gateway.spec.auth.bearer_token_secret.name = "front-door-token".into();
    gateway.spec.apis.commands = true;
    gateway.spec.tls = Some(GatewayTls {
        secret_name: "front-door-tls".into(),
    });
    input.gateways.push(gateway);
    let plan = ktwin_planner::plan(&input, config).unwrap();
    render_plan(&plan, config, &Discovered::placeholders(&plan))
        .objects
        .into_iter()
        .map(|d| d.object)
        .collect()
}

#[test]
fn every_rendered_ktwin_container_runs_a_real_command() {
    let image = DEFAULT_IMAGE.rsplit_once(':').unwrap().0;
    let values = InstallValues::default();
    let bundle = install_bundle(&values, DEFAULT_OPERATOR_NAMESPACE).unwrap();
    let chart = ktwin_testkit::helm::render_chart(
        &ktwin_testkit::workspace_root().join("deploy/helm/ktwin"),
        None,
        DEFAULT_OPERATOR_NAMESPACE,
    );
    let config = KtwinConfig::default();
    let mut all = containers_of("bundle", &bundle, image);
    all.extend(containers_of("chart", &chart, image));
    all.extend(containers_of(
        "smart city",
        &smart_city_objects(&config, false),
        image,
    ));
    all.extend(containers_of(
        "smart city (PostgreSQL)",
        &smart_city_objects(&config, true),
        image,
    ));
    let commands: BTreeSet<String> = all
        .iter()
        .map(|c| {
            c.args
                .iter()
                .take_while(|a| !a.starts_with('-'))
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for expected in [
        "operator",
        "graph",
        "store",
        "dispatcher mqtt",
        "dispatcher cloudevent",
        "gateway",
        "service smart-city/pole",
    ] {
        assert!(
            commands.contains(expected),
            "no container runs `ktwin {expected}`: {commands:?}"
        );
    }
    for container in &all {
        check(container);
    }
}

#[test]
fn the_smart_city_example_runs_our_services_from_the_ktwin_image() {
    let config = KtwinConfig::default();
    let objects = smart_city_objects(&config, false);
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o["apiVersion"] == "serving.knative.dev/v1"
                && o["metadata"]["labels"]["ktwin/twin-interface"].is_string()
        })
        .collect();
    assert!(services.len() >= 10, "{} twin services", services.len());
    let handlers = ktwin::built_in_handlers();
    for service in services {
        let container = &service["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], DEFAULT_IMAGE, "{service}");
        let args = container["args"].as_array().unwrap();
        assert_eq!(args[0], "service");
        let handler = args[1].as_str().unwrap();
        assert!(handlers.contains_key(handler), "{handler} is not built in");
    }
}
