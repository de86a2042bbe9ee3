//! TwinInstances from Kubernetes: a kube-rs reflector keeps a local cache current through a
//! watch (no polling); each change republishes the graph.

use futures::StreamExt as _;
use ktwin_model::{InstanceGraph, TwinInstance};
use kube::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use tokio_util::sync::CancellationToken;

use crate::GraphState;

/// Watches TwinInstances in `namespace` (all namespaces when `None`) until `cancel` fires.
/// The graph is published once the initial list is complete and after every change; watch
/// errors are recorded (503 until the first complete list) and retried with backoff.
pub async fn watch_kubernetes(
    client: kube::Client,
    namespace: Option<String>,
    state: GraphState,
    cancel: CancellationToken,
) {
    let api: Api<TwinInstance> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    let mut synced = false;
    let publish = || {
        let instances = reader.state();
        state.publish(InstanceGraph::from_instances(
            instances.iter().map(|i| i.as_ref()),
        ));
    };
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            event = stream.next() => event,
        };
        match event {
            None => break,
            Some(Ok(watcher::Event::InitDone)) => {
                synced = true;
                publish();
            }
            Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) if synced => publish(),
            Some(Ok(_)) => {}
            Some(Err(err)) => state.fail(format!("watching TwinInstances: {err}")),
        }
    }
}
