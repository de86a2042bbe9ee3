//! The graph routes over a published graph, and local mode picking up file changes.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ktwin_graph::{GraphState, LocalSource, router, watch_local};
use ktwin_model::{GraphJson, InstanceGraph};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn get(app: &Router, uri: &str) -> (StatusCode, Option<String>, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&body).unwrap())
}

fn city() -> Value {
    json!({"twinInstances": [
        {"name": "pole-2", "interface": "city-pole",
         "relationships": [{"name": "refNeighborhood", "interface": "neighborhood", "instance": "nb-1"}]},
        {"name": "nb-1", "interface": "neighborhood"},
        {"name": "pole-1", "interface": "city-pole",
         "relationships": [{"name": "refNeighborhood", "interface": "neighborhood", "instance": "nb-1"}]}
    ]})
}

fn graph(doc: Value) -> InstanceGraph {
    InstanceGraph::from_json(&serde_json::from_value::<GraphJson>(doc).unwrap())
}

#[tokio::test]
async fn unavailable_source_is_503_and_missing_things_are_404() {
    let state = GraphState::new();
    let app = router(state.clone());
    let (status, content_type, problem) = get(&app, "/api/v1/twin-graph").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not delivered")
    );

    state.publish(graph(city()));
    let (status, _, whole) = get(&app, "/api/v1/twin-graph").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = whole["twinInstances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("nb-1"), json!("pole-1"), json!("pole-2")],
        "sorted by name"
    );
    assert!(
        whole["twinInstances"][0].get("relationships").is_none(),
        "empty lists omitted as in the original"
    );

    let (status, _, poles) = get(&app, "/api/v1/twin-graph/city-pole").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(poles["twinInstances"].as_array().unwrap().len(), 2);
    assert_eq!(
        poles["twinInstances"][0]["relationships"][0]["instance"],
        "nb-1"
    );
    let (status, _, problem) = get(&app, "/api/v1/twin-graph/street-light").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(problem["detail"].as_str().unwrap().contains("street-light"));

    let (status, _, node) = get(&app, "/api/v1/twin-graph/instances/nb-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["interface"], "neighborhood");
    assert_eq!(
        node["incoming"],
        json!([{"name": "refNeighborhood", "source": "pole-1", "sourceInterface": "city-pole"},
               {"name": "refNeighborhood", "source": "pole-2", "sourceInterface": "city-pole"}])
    );
    assert_eq!(
        get(&app, "/api/v1/twin-graph/instances/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    // A failing source keeps serving the last good graph.
    state.fail("API server unreachable");
    assert_eq!(get(&app, "/api/v1/twin-graph").await.0, StatusCode::OK);

    let (status, _, doc) = get(&app, ktwin_graph::OPENAPI_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/twin-graph/instances/{instance}"].is_object());
}

/// Waits (bounded) until the served graph satisfies `done`.
async fn until(state: &GraphState, done: impl Fn(&InstanceGraph) -> bool) {
    let mut changes = state.subscribe();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if changes
                .borrow_and_update()
                .graph
                .as_deref()
                .is_some_and(&done)
            {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the graph did not pick up the file change");
}

#[tokio::test]
async fn local_graph_file_changes_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ktwin_graph.json");
    std::fs::write(&file, city().to_string()).unwrap();
    let state = GraphState::new();
    let cancel = CancellationToken::new();
    let task = watch_local(
        LocalSource::GraphFile(file.clone()),
        state.clone(),
        cancel.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        state.snapshot().graph.unwrap().len(),
        3,
        "loaded before watching returns"
    );

    // Replace the file the way editors do: write a sibling, rename over.
    let mut doc = city();
    doc["twinInstances"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "pole-3", "interface": "city-pole"}));
    let staged = dir.path().join(".ktwin_graph.json.tmp");
    std::fs::write(&staged, doc.to_string()).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    until(&state, |g| g.contains("pole-3")).await;

    // Broken content: the error is recorded, the last good graph stays.
    std::fs::write(&file, "{not json").unwrap();
    let mut changes = state.subscribe();
    tokio::time::timeout(Duration::from_secs(5), async {
        while changes.borrow_and_update().error.is_none() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the broken file was not noticed");
    let snapshot = state.snapshot();
    assert!(snapshot.error.unwrap().contains("ktwin_graph.json"));
    assert!(snapshot.graph.unwrap().contains("pole-3"));

    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn local_project_is_loaded() {
    let project = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/smart-city");
    if !std::path::Path::new(project).join("ktwin.yaml").exists() {
        eprintln!("SKIPPED: example project {project} is absent");
        return;
    }
    let graph = ktwin_graph::load_local(&LocalSource::Project(project.into())).unwrap();
    assert!(!graph.is_empty(), "the smart-city world has instances");
}
