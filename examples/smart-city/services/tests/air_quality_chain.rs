//! The air-quality → pole → neighborhood chain over the SDK's HTTP contract, against the real
//! event store (`ktwin-store`, embedded backend) over HTTP.
//!
//! The three services run as HTTP twin services (`ktwin_sdk::router`), reading states from
//! the store with `HttpEventStore`. A small ingress stands in for the Knative broker and its
//! triggers: it routes each event by type (store events to `POST /api/v1/twin-events`,
//! commands to the interface's service) in binary mode and, as Knative does, publishes a
//! CloudEvent found in a service's reply.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ktwin_sdk::cloudevents::{AttributesReader, Event, EventBuilder as _, EventBuilderV10};
use ktwin_sdk::{
    BrokerClient, Emitter, HttpEventStore, RetryPolicy, StaticGraph, TwinContext, TwinHandler,
    to_binary_http,
};
use ktwin_smart_city_services::air_quality::AirQualityService;
use ktwin_smart_city_services::neighborhood::NeighborhoodService;
use ktwin_smart_city_services::pole::PoleService;
use ktwin_store::{ApiConfig, BackendChoice, IngestConfig, Ingestor};
use ktwin_testkit::serve;

/// Where the stand-in broker delivers each type.
struct Triggers {
    store: String,
    pole: String,
    neighborhood: String,
    client: reqwest::Client,
}

impl Triggers {
    fn target(&self, ty: &str) -> Option<&str> {
        if ty.starts_with("ktwin.store.") {
            Some(&self.store)
        } else if ty == "ktwin.command.city-pole.updateairqualityindex" {
            Some(&self.pole)
        } else if ty == "ktwin.command.s4city-city-neighborhood.updateairqualityindex" {
            Some(&self.neighborhood)
        } else {
            None
        }
    }

    /// Delivers `event` and, Knative-style, publishes the CloudEvent of a 2xx reply.
    fn deliver(self: Arc<Self>, event: Event) -> futures_like::BoxFuture<Result<(), String>> {
        Box::pin(async move {
            let Some(target) = self.target(event.ty()) else {
                return Err(format!("no trigger for {}", event.ty()));
            };
            let (headers, body) = to_binary_http(event).map_err(|e| e.to_string())?;
            let response = self
                .client
                .post(target)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!(
                    "{target} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            if headers.contains_key("ce-type") {
                let reply =
                    ktwin_sdk::cloudevents::binding::http::to_event(&headers, body.to_vec())
                        .map_err(|e| e.to_string())?;
                self.deliver(reply).await?;
            }
            Ok(())
        })
    }
}

mod futures_like {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

async fn ingress(
    State(triggers): State<Arc<Triggers>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let event = match ktwin_sdk::cloudevents::binding::http::to_event(&headers, body.to_vec()) {
        Ok(event) => event,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()),
    };
    match triggers.deliver(event).await {
        Ok(()) => (StatusCode::ACCEPTED, String::new()),
        Err(err) => (StatusCode::BAD_GATEWAY, err),
    }
}

const GRAPH: &str = r#"{"twinInstances":[
  {"name":"ngsi-ld-city-airqualityobserved-nb001-p00007","interface":"ngsi-ld-city-airqualityobserved",
   "relationships":[{"name":"citypole","interface":"city-pole","instance":"city-pole-nb001-p00007"}]},
  {"name":"city-pole-nb001-p00007","interface":"city-pole",
   "relationships":[{"name":"refNeighborhood","interface":"s4city-city-neighborhood","instance":"s4city-city-neighborhood-nb001"}]},
  {"name":"s4city-city-neighborhood-nb001","interface":"s4city-city-neighborhood"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighborhood_stores_the_worst_level_its_poles_relay() {
    // The event store, embedded backend in a scratch directory, over HTTP.
    let dir = tempfile::tempdir().unwrap();
    let backend = BackendChoice::Embedded(dir.path().join("store"))
        .open()
        .await
        .unwrap();
    let (ingestor, _ingest_task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let store = serve(ktwin_store::router(backend, ingestor, ApiConfig::default())).await;

    // The stand-in broker, then the three services posting to it.
    let triggers_slot = Arc::new(tokio::sync::OnceCell::new());
    let ingress_url = {
        let slot = triggers_slot.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let slot = slot.clone();
            async move {
                ingress(
                    State(slot.get().cloned().expect("triggers set")),
                    headers,
                    body,
                )
                .await
            }
        });
        serve(app).await
    };
    let service = |handler: Arc<dyn TwinHandler>| {
        let ctx = TwinContext::new(
            Arc::new(StaticGraph::from_json(GRAPH).unwrap()),
            Arc::new(HttpEventStore::new(&store, Duration::from_secs(5))),
        );
        let emitter = Emitter {
            reply: true,
            broker: Some(BrokerClient::new(&ingress_url, RetryPolicy::default())),
        };
        ktwin_sdk::router(handler, ctx, emitter, ktwin_service::Readiness::new(), 16)
    };
    let air_quality = serve(service(Arc::new(AirQualityService))).await;
    let pole = serve(service(Arc::new(PoleService))).await;
    let neighborhood = serve(service(Arc::new(NeighborhoodService::default()))).await;
    let triggers = Arc::new(Triggers {
        store: format!("{store}/api/v1/twin-events"),
        pole,
        neighborhood,
        client: reqwest::Client::new(),
    });
    triggers_slot.set(triggers.clone()).ok().unwrap();

    // Three readings of one sensor, as the MQTT dispatcher would deliver them.
    // 1: every density 8 → CO 86 MODERATE. 2: PM2.5 40 → 49/19.9·4.5 + 101 = 112 USG.
    // 3: all low → GOOD. The neighborhood keeps the worst of the hour: USG.
    let readings = [
        serde_json::json!({"CODensity": 8, "PM10Density": 8, "PM25Density": 8, "SO2Density": 8, "O3Density": 8}),
        serde_json::json!({"CODensity": 1, "PM25Density": 40}),
        serde_json::json!({"CODensity": 1, "PM25Density": 2, "O3Density": 10}),
    ];
    let client = reqwest::Client::new();
    for (i, reading) in readings.into_iter().enumerate() {
        let event = EventBuilderV10::new()
            .id(format!("reading-{i}"))
            .ty("ktwin.real.ngsi-ld-city-airqualityobserved")
            .source("ngsi-ld-city-airqualityobserved-nb001-p00007")
            .time(chrono::Utc::now())
            .data("application/json", reading)
            .build()
            .unwrap();
        let (headers, body) = to_binary_http(event).unwrap();
        let response = client
            .post(&air_quality)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let reply_headers = response.headers().clone();
        let reply_body = response.bytes().await.unwrap();
        assert!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&reply_body)
        );
        let reply =
            ktwin_sdk::cloudevents::binding::http::to_event(&reply_headers, reply_body.to_vec())
                .unwrap();
        triggers.clone().deliver(reply).await.unwrap();
    }

    let states = HttpEventStore::new(&store, Duration::from_secs(5));
    let mut stored = None;
    for _ in 0..100 {
        if let Some(event) = ktwin_sdk::StateLookup::latest(
            &states,
            "s4city-city-neighborhood",
            "s4city-city-neighborhood-nb001",
        )
        .await
        .unwrap()
        {
            let data: serde_json::Value = ktwin_sdk::from_json_slice(&event_bytes(&event)).unwrap();
            if data["aqiLevelLastSeen"].get("GOOD").is_some() {
                stored = Some(data);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = stored.expect("the neighborhood's third update was never stored");
    assert_eq!(
        stored["aqiLevel"], "UNHEALTHY_FOR_SENSITIVE_GROUPS",
        "{stored}"
    );

    let aq = ktwin_sdk::StateLookup::latest(
        &states,
        "ngsi-ld-city-airqualityobserved",
        "ngsi-ld-city-airqualityobserved-nb001-p00007",
    )
    .await
    .unwrap()
    .expect("air-quality state stored");
    let aq: serde_json::Value = serde_json::from_slice(&event_bytes(&aq)).unwrap();
    assert_eq!(aq["aqiLevel"], "GOOD", "{aq}");
}

fn event_bytes(event: &Event) -> Vec<u8> {
    match event.data() {
        Some(ktwin_sdk::cloudevents::Data::Binary(b)) => b.clone(),
        Some(ktwin_sdk::cloudevents::Data::String(s)) => s.clone().into_bytes(),
        Some(ktwin_sdk::cloudevents::Data::Json(v)) => v.to_string().into_bytes(),
        None => b"null".to_vec(),
    }
}
