//! The gateway in front of the real services: the event store (embedded backend), the graph
//! service and a twin service built on the SDK receiving commands; each reached only through
//! the gateway, with its bearer token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ktwin_auth::{
    AuthLayer, Authenticator, Reloading, Scope, SecretDigest, TokenEntry, TokenFile, TokenSet,
    TwinGrant,
};
use ktwin_gateway::{Apis, GatewayConfig, Upstreams, route_policy, router};
use ktwin_model::crd::{TwinInstance, TwinInstanceSpec};
use ktwin_sdk::{EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait};
use ktwin_service::Readiness;
use ktwin_testkit::serve;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token";

/// The gateway's access control, accepting [`TOKEN`] with `write` on every twin.
fn auth() -> AuthLayer {
    let file = TokenFile {
        tokens: vec![TokenEntry {
            name: "client".into(),
            sha256: SecretDigest::of(TOKEN).to_hex(),
            scope: Scope::Write,
            grant: TwinGrant::all(),
            expires: None,
        }],
    };
    let tokens = Reloading::fixed(TokenSet::new(&file).unwrap());
    AuthLayer::new(Authenticator::new(tokens), route_policy().build().unwrap())
}

/// The real event store on a scratch embedded database.
async fn store(dir: &std::path::Path) -> String {
    let backend = ktwin_store::BackendChoice::Embedded(dir.join("store"))
        .open()
        .await
        .unwrap();
    let (ingestor, _task) =
        ktwin_store::Ingestor::spawn(backend.clone(), ktwin_store::IngestConfig::default());
    let config = ktwin_store::ApiConfig {
        body_limit: 1 << 20,
        known_interfaces: ktwin_store::KnownInterfaces::any(),
    };
    serve(ktwin_store::router(backend, ingestor, config)).await
}

/// The real graph service with one pole.
async fn graph() -> String {
    let mut pole = TwinInstance::new(
        "pole-1",
        TwinInstanceSpec {
            interface: "city-pole".into(),
            ..Default::default()
        },
    );
    pole.metadata.namespace = Some("ktwin".into());
    let state = ktwin_graph::GraphState::new();
    state.publish(ktwin_graph::InstanceGraph::from_instances([&pole]));
    serve(ktwin_graph::router(state)).await
}

/// A twin service (SDK, Knative contract) recording the commands it receives.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, Value)>>);

#[async_trait]
impl TwinHandler for Recorder {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::command("city-pole", "reboot").unwrap()]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        _ctx: &TwinContext,
    ) -> Result<Vec<cloudevents::Event>, HandlerError> {
        self.0.lock().unwrap().push((
            event.event_type().to_string(),
            event.instance().to_owned(),
            event.json()?,
        ));
        Ok(Vec::new())
    }
}

struct World {
    gateway: String,
    store: String,
    commands: Arc<Recorder>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn world(apis: Apis) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let graph = graph().await;
    let commands = Arc::new(Recorder::default());
    let ctx = TwinContext::new(
        Arc::new(ktwin_sdk::StaticGraph::default()),
        Arc::new(ktwin_sdk::MemoryStates::new()),
    );
    let service = ktwin_sdk::router(
        commands.clone(),
        ctx,
        ktwin_sdk::Emitter::default(),
        Readiness::new(),
        4,
    );
    let service = serve(service).await;
    // The broker delivers commands to the twin service.
    let config = |broker_url: String| GatewayConfig {
        apis,
        upstreams: Upstreams {
            graph_url: Some(format!("{graph}/api/v1/twin-graph")),
            event_store_url: Some(store.clone()),
            broker_url: Some(broker_url),
        },
        body_limit: 64 * 1024,
        upstream_timeout: Duration::from_secs(5),
        upstream_token: None,
        trace_sampler: ktwin_events::trace::TraceSampler::default(),
    };
    let readiness = Readiness::new();
    readiness.set_ready(true);
    let gateway = serve(router(config(service), auth(), readiness)).await;
    World {
        gateway,
        store,
        commands,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

const ALL: Apis = Apis {
    graph: true,
    event_store: true,
    commands: true,
};

impl World {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(TOKEN)
    }
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let world = world(ALL).await;
    let url = format!("{}/api/v1/twin-graph", world.gateway);
    let none = world.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let wrong = world
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert!(!body.to_string().contains(TOKEN));
    // Probes stay open for the kubelet.
    let health = world
        .client
        .get(format!("{}/health", world.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn reads_the_graph_through_the_graph_service() {
    let world = world(ALL).await;
    let whole: Value = world
        .get("/api/v1/twin-graph")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["twinInstances"][0]["name"], "pole-1");
    let poles = world
        .get("/api/v1/twin-graph/city-pole")
        .send()
        .await
        .unwrap();
    assert_eq!(poles.status(), 200);
    let poles: Value = poles.json().await.unwrap();
    assert_eq!(poles["twinInstances"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn reads_state_and_history_from_the_event_store() {
    let world = world(ALL).await;
    // A device's event, stored as the platform stores it.
    let event = ktwin_events::EventBuilder::new(EventType::real("city-pole").unwrap(), "pole-1")
        .unwrap()
        .data(json!({"light": 0.5}))
        .build();
    let (headers, body) = ktwin_sdk::to_binary_http(event).unwrap();
    let stored = world
        .client
        .post(format!("{}/api/v1/twin-events", world.store))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 202);
    let latest = world
        .get("/api/v1/twin-events/city-pole/pole-1/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 200);
    let latest: Value = latest.json().await.unwrap();
    assert!(latest.to_string().contains("0.5"), "{latest}");
    let history: Value = world
        .get("/api/v1/twin-events/city-pole/pole-1?limit=10")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let missing = world
        .get("/api/v1/twin-events/city-pole/nobody/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn commands_reach_the_twin_service_as_cloudevents() {
    let world = world(ALL).await;
    let sent = world
        .client
        .post(format!(
            "{}/api/v1/commands/city-pole/pole-1/Reboot",
            world.gateway
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"delaySeconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let receipt: Value = sent.json().await.unwrap();
    assert_eq!(receipt["type"], "ktwin.command.city-pole.reboot");
    let received = world.commands.0.lock().unwrap().clone();
    assert_eq!(
        received,
        vec![(
            "ktwin.command.city-pole.reboot".to_owned(),
            "pole-1".to_owned(),
            json!({"delaySeconds": 5})
        )]
    );
    let bad = world
        .client
        .post(format!(
            "{}/api/v1/commands/city-pole/pole-1/reboot",
            world.gateway
        ))
        .bearer_auth(TOKEN)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn posted_events_reach_the_broker_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let config = GatewayConfig {
        apis: ALL,
        upstreams: Upstreams {
            graph_url: None,
            event_store_url: Some(store.clone()),
            // Where eventing-rabbitmq delivers a persisted interface's real events.
            broker_url: Some(format!("{store}/api/v1/twin-events")),
        },
        body_limit: 1024,
        upstream_timeout: Duration::from_secs(5),
        upstream_token: None,
        trace_sampler: ktwin_events::trace::TraceSampler::default(),
    };
    let gateway = serve(router(config, auth(), Readiness::new())).await;
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{gateway}/api/v1/events/city-pole/pole-2"))
        .bearer_auth(TOKEN)
        .json(&json!({"light": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let latest: Value = client
        .get(format!(
            "{gateway}/api/v1/twin-events/city-pole/pole-2/latest"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(latest.to_string().contains("\"light\""), "{latest}");
    let too_big = client
        .post(format!("{gateway}/api/v1/events/city-pole/pole-2"))
        .bearer_auth(TOKEN)
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let bad_name = client
        .post(format!("{gateway}/api/v1/events/city.pole/pole-2"))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_name.status(), 400);
    // No graph upstream configured: a clear 503, not a hang.
    let graph = client
        .get(format!("{gateway}/api/v1/twin-graph"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(graph.status(), 503);
}

#[tokio::test]
async fn switched_off_groups_answer_404() {
    let world = world(Apis {
        graph: false,
        event_store: true,
        commands: false,
    })
    .await;
    assert_eq!(
        world
            .get("/api/v1/twin-graph")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let command = world
        .client
        .post(format!(
            "{}/api/v1/commands/city-pole/pole-1/reboot",
            world.gateway
        ))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 404);
    assert!(world.commands.0.lock().unwrap().is_empty());
}
