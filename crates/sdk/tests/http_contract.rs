//! The Knative contract of `ktwin_sdk::router`: CloudEvents in (binary and structured), status
//! codes, reply semantics, posting to a broker ingress, graph and state clients over HTTP.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use cloudevents::AttributesReader;
use http_body_util::BodyExt;
use ktwin_sdk::{
    BrokerClient, Emitter, EventType, GraphCachePolicy, GraphLookup, HandlerError, HttpEventStore,
    HttpGraph, MemoryStates, RetryPolicy, StateLookup, StaticGraph, TwinContext, TwinEvent,
    TwinHandler, async_trait, router, store_event,
};
use tower::ServiceExt;

/// Stores the reading and commands the pole; a reading without `fail` succeeds.
struct Reading;

#[async_trait]
impl TwinHandler for Reading {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real("ngsi-ld-city-airqualityobserved").unwrap()]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<cloudevents::Event>, HandlerError> {
        let data = event.json()?;
        if data.get("fail").is_some() {
            return Err(HandlerError::Unavailable("told to fail".into()));
        }
        Ok(vec![
            store_event(event.interface(), event.instance(), &data)?,
            ctx.command_to_related(
                event.interface(),
                event.instance(),
                "citypole",
                "updateAirQualityIndex",
                serde_json::json!({"aqiLevel": "GOOD"}),
            )
            .await?,
        ])
    }
}

fn graph() -> StaticGraph {
    StaticGraph::from_json(
        r#"{"twinInstances":[{"name":"aq-1","interface":"ngsi-ld-city-airqualityobserved",
            "relationships":[{"name":"citypole","interface":"city-pole","instance":"pole-1"}]}]}"#,
    )
    .unwrap()
}

fn app(emitter: Emitter) -> Router {
    let ctx = TwinContext::in_memory(graph(), Arc::new(MemoryStates::new()));
    router(
        Arc::new(Reading),
        ctx,
        emitter,
        ktwin_service::Readiness::new(),
        4,
    )
}

fn binary_request(source: &str, body: &str) -> Request<Body> {
    Request::post("/any/path")
        .header("ce-id", "e-1")
        .header("ce-specversion", "1.0")
        .header("ce-type", "ktwin.real.ngsi-ld-city-airqualityobserved")
        .header("ce-source", source)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// A broker ingress on a local port that records what it receives and answers 202.
async fn recording_ingress() -> (String, Arc<Mutex<Vec<cloudevents::Event>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let event = cloudevents::binding::http::to_event(&headers, body.to_vec()).unwrap();
            sink.lock().unwrap().push(event);
            StatusCode::ACCEPTED
        }),
    );
    let url = format!("{}/", ktwin_testkit::serve(app).await);
    (url, received)
}

#[tokio::test]
async fn binary_event_in_last_event_in_reply_others_to_the_broker() {
    let (url, received) = recording_ingress().await;
    let emitter = Emitter {
        reply: true,
        broker: Some(BrokerClient::new(&url, RetryPolicy::default())),
    };
    let (status, headers, body) =
        send(app(emitter), binary_request("aq-1", r#"{"CODensity":1}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(
        headers["ce-type"],
        "ktwin.command.city-pole.updateairqualityindex"
    );
    assert_eq!(headers["ce-source"], "pole-1");
    assert_eq!(&body[..], br#"{"aqiLevel":"GOOD"}"#);
    let posted = received.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0].ty(),
        "ktwin.store.ngsi-ld-city-airqualityobserved"
    );
    assert_eq!(posted[0].source().as_str(), "aq-1");
}

#[tokio::test]
async fn structured_event_in_all_events_to_the_broker() {
    let (url, received) = recording_ingress().await;
    let emitter = Emitter {
        reply: false,
        broker: Some(BrokerClient::new(&url, RetryPolicy::default())),
    };
    let structured = serde_json::json!({
        "specversion": "1.0", "id": "s-1", "source": "aq-1",
        "type": "ktwin.real.ngsi-ld-city-airqualityobserved",
        "datacontenttype": "application/json", "data": {"CODensity": 2}
    });
    let request = Request::put("/")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(structured.to_string()))
        .unwrap();
    let (status, headers, body) = send(app(emitter), request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("ce-type").is_none());
    assert!(body.is_empty());
    assert_eq!(received.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn status_codes_tell_knative_whether_to_redeliver() {
    // Not a CloudEvent: 400, redelivery cannot help.
    let request = Request::post("/").body(Body::from("hello")).unwrap();
    assert_eq!(
        send(app(Emitter::default()), request).await.0,
        StatusCode::BAD_REQUEST
    );
    // Twin missing from the graph: 400 naming it.
    let (status, _, body) = send(app(Emitter::default()), binary_request("aq-404", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("aq-404"));
    // A failing dependency: 503, redelivered.
    let (status, _, _) = send(
        app(Emitter::default()),
        binary_request("aq-1", r#"{"fail":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Two events, reply only and no broker: 500 rather than losing one.
    let emitter = Emitter {
        reply: true,
        broker: None,
    };
    let (status, _, body) = send(app(emitter), binary_request("aq-1", "{}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("KTWIN_BROKER"));
    // Broker refusing: 503 after retries.
    let emitter = Emitter {
        reply: false,
        broker: Some(BrokerClient::new(
            "http://127.0.0.1:9/",
            RetryPolicy {
                attempts: 2,
                first_backoff: std::time::Duration::from_millis(1),
                ..RetryPolicy::default()
            },
        )),
    };
    assert_eq!(
        send(app(emitter), binary_request("aq-1", "{}")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Ops routes are still there.
    let request = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(
        send(app(Emitter::default()), request).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn graph_and_state_clients_speak_the_original_routes() {
    let graph_hits = Arc::new(Mutex::new(0));
    let hits = graph_hits.clone();
    let app = Router::new()
        .route(
            "/api/v1/twin-graph/{iface}",
            get(move |axum::extract::Path(iface): axum::extract::Path<String>| {
                *hits.lock().unwrap() += 1;
                async move {
                    if iface == "city-pole" {
                        (StatusCode::OK, r#"{"twinInstances":[{"name":"pole-1","interface":"city-pole","relationships":[{"name":"refNeighborhood","interface":"s4city-city-neighborhood","instance":"nb-1"}]}]}"#.to_owned())
                    } else {
                        (StatusCode::NOT_FOUND, "\"Not Found\"".to_owned())
                    }
                }
            }),
        )
        .route(
            "/api/v1/twin-events/{iface}/{inst}/latest",
            get(|axum::extract::Path((iface, inst)): axum::extract::Path<(String, String)>| async move {
                if inst == "nb-1" {
                    let mut headers = HeaderMap::new();
                    headers.insert("ce-id", "x".parse().unwrap());
                    headers.insert("ce-type", format!("ktwin.store.{iface}").parse().unwrap());
                    headers.insert("ce-source", inst.parse().unwrap());
                    headers.insert("ce-specversion", "1.0".parse().unwrap());
                    headers.insert("ce-timestamp", "2024-05-20 10:00:00 +0000 UTC".parse().unwrap());
                    headers.insert("content-type", "application/json; charset=utf-8".parse().unwrap());
                    (StatusCode::OK, headers, r#"{"AqiLevel":"MODERATE"}"#)
                } else {
                    (StatusCode::NOT_FOUND, HeaderMap::new(), "\"Not Found\"")
                }
            }),
        );
    let base = ktwin_testkit::serve(app).await;

    let graph = HttpGraph::new(
        &format!("{base}/api/v1/twin-graph/"),
        GraphCachePolicy::default(),
    );
    let node = graph.twin("city-pole", "pole-1").await.unwrap().unwrap();
    assert_eq!(
        node.relationship("refNeighborhood").unwrap().instance,
        "nb-1"
    );
    let again = graph.twin("city-pole", "pole-1").await.unwrap().unwrap();
    assert_eq!(
        *graph_hits.lock().unwrap(),
        1,
        "a fresh sub-graph is served from the cache"
    );
    assert!(
        Arc::ptr_eq(&node, &again),
        "the cache hands out its node, not a copy of it"
    );
    assert!(
        graph.twin("unknown-iface", "x").await.unwrap().is_none(),
        "404 is an empty sub-graph"
    );

    let store = HttpEventStore::new(&format!("{base}/"), std::time::Duration::from_secs(2));
    let latest = store
        .latest("s4city-city-neighborhood", "nb-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.ty(), "ktwin.store.s4city-city-neighborhood");
    assert!(
        store
            .latest("s4city-city-neighborhood", "nb-2")
            .await
            .unwrap()
            .is_none()
    );
    let ctx = TwinContext::new(Arc::new(graph), Arc::new(store));
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Neighborhood {
        aqi_level: String,
    }
    let state: Neighborhood = ctx
        .latest("s4city-city-neighborhood", "nb-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.aqi_level, "MODERATE");

    let down = HttpEventStore::new("http://127.0.0.1:9", std::time::Duration::from_secs(1));
    assert!(down.latest("a", "b").await.is_err());
}

/// Knative and eventing-rabbitmq carry W3C trace context as the plain `traceparent` header:
/// an event without the attribute continues that trace instead of starting a new one.
#[tokio::test]
async fn the_knative_traceparent_header_continues_the_trace() {
    use ktwin_events::trace::EventTrace;
    let knative = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (url, received) = recording_ingress().await;
    let emitter = Emitter {
        reply: true,
        broker: Some(BrokerClient::new(&url, RetryPolicy::default())),
    };
    let mut request = binary_request("aq-1", r#"{"CODensity":1}"#);
    request
        .headers_mut()
        .insert("traceparent", knative.parse().unwrap());
    request
        .headers_mut()
        .insert("tracestate", "rojo=00f067aa0ba902b7".parse().unwrap());
    let (status, headers, _) = send(app(emitter), request).await;
    assert_eq!(status, StatusCode::OK);
    let reply = EventTrace::parse(
        headers["ce-traceparent"].to_str().unwrap(),
        headers.get("ce-tracestate").map(|v| v.to_str().unwrap()),
    )
    .expect("the reply carries a trace");
    let posted = EventTrace::of(&received.lock().unwrap()[0]).expect("the posted event too");
    let header: ktwin_events::trace::TraceParent = knative.parse().unwrap();
    for trace in [&reply, &posted] {
        assert_eq!(trace.parent.trace_id, header.trace_id);
        assert_eq!(trace.causes, vec![header.span_id]);
    }
    assert!(
        headers["ce-tracestate"]
            .to_str()
            .unwrap()
            .contains("rojo=00f067aa0ba902b7"),
        "other vendors' entries are kept"
    );

    // The event's own traceparent attribute wins over the transport's header.
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut request = binary_request("aq-1", r#"{"CODensity":1}"#);
    request
        .headers_mut()
        .insert("ce-traceparent", own.parse().unwrap());
    request
        .headers_mut()
        .insert("traceparent", knative.parse().unwrap());
    let emitter = Emitter {
        reply: true,
        broker: Some(BrokerClient::new(&url, RetryPolicy::default())),
    };
    let (_, headers, _) = send(app(emitter), request).await;
    let trace = EventTrace::parse(headers["ce-traceparent"].to_str().unwrap(), None).unwrap();
    assert_eq!(
        trace.parent.trace_id,
        own.parse::<ktwin_events::trace::TraceParent>()
            .unwrap()
            .trace_id
    );
}
