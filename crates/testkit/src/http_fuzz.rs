//! Arbitrary HTTP requests for the route fuzz tests of every ktwin service, and the one rule
//! their answers must follow: a success (or `304`), or a `4xx` whose body is a problem-details
//! JSON object (`application/problem+json`). A `5xx` is a failure: the backends are up in
//! these tests, so a `5xx` is a panic caught by the service layers or an unhandled error.
//!
//! Requests aim at a service's route templates (`/api/v1/twin-events/{interface}/{instance}`)
//! with hostile segments (invalid UTF-8 escapes, encoded slashes, very long names), hostile
//! query strings (paging cursors, limits and times out of range), CloudEvents headers with
//! arbitrary values, and bodies that are arbitrary bytes, arbitrary JSON or almost-valid
//! CloudEvents; a share of them go anywhere else.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Environment variable: cases per fuzzed app (default [`DEFAULT_CASES`]); a longer run
/// (`KTWIN_HTTP_FUZZ_CASES=100000`) searches further.
pub const CASES_VAR: &str = "KTWIN_HTTP_FUZZ_CASES";

/// Cases per fuzzed app in `./scripts/test.sh`: a few seconds per app.
pub const DEFAULT_CASES: u32 = 400;

/// Longest an answer may take before the request counts as a hang. Far above any answer's
/// time: it only keeps a hung handler from hanging the test.
const HANG: Duration = Duration::from_secs(20);

/// Which credential a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// None.
    Missing,
    /// The valid token the fuzz run was given.
    Valid,
    /// A token nobody issued (or a malformed `Authorization` header).
    Garbage,
}

/// One arbitrary request.
#[derive(Debug, Clone)]
pub struct FuzzRequest {
    /// Method.
    pub method: Method,
    /// Path and query, already a valid request target.
    pub target: String,
    /// Headers besides `Authorization`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Credential to present.
    pub credential: Credential,
    /// Raw `Authorization` value used for [`Credential::Garbage`].
    pub garbage_authorization: HeaderValue,
    /// Body.
    pub body: Vec<u8>,
}

impl FuzzRequest {
    /// The request as `http` builds it, presenting `token` for [`Credential::Valid`].
    pub fn to_request(&self, token: Option<&str>) -> Request<Body> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.target);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        match (self.credential, token) {
            (Credential::Valid, Some(token)) => {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            (Credential::Garbage, _) => {
                request = request.header(AUTHORIZATION, self.garbage_authorization.clone());
            }
            _ => {}
        }
        request
            .body(Body::from(self.body.clone()))
            .expect("fuzzed requests are built from valid parts")
    }
}

/// Characters a fuzzed name is made of: printable ASCII, a few non-ASCII letters and
/// controls (percent-encoded on the way out).
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => proptest::char::range('a', 'z'),
        2 => proptest::char::range(' ', '~'),
        1 => prop::sample::select(vec!['é', 'ß', '中', '🙂', '\u{0}', '\u{7f}', '\u{202e}']),
    ]
}

/// One path segment or query value, already escaped for a request target.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "city-pole", "pole-1", "ngsi-ld-city-airqualityobserved", "s4city-city-neighborhood",
            "", ".", "..", "0", "-1", "1000000000000000000000", "1e309", "NaN", "true",
            "2024-01-01T00:00:00Z", "1970-01-01T00:00:00+25:00", "9999-12-31T23:59:59Z",
        ]).prop_map(str::to_owned),
        4 => prop::collection::vec(name_char(), 0..24).prop_map(|c| escape(&c.into_iter().collect::<String>())),
        2 => prop::collection::vec(any::<u8>(), 0..16).prop_map(|bytes| {
            // Escapes of arbitrary bytes: invalid UTF-8 once decoded.
            bytes.iter().map(|b| format!("%{b:02X}")).collect()
        }),
        1 => prop::sample::select(vec!["%", "%G1", "%2F", "%00", "a%C3%A9b", "%E2%82", "+"])
            .prop_map(str::to_owned),
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

/// `text` with every byte outside the unreserved set percent-encoded.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A path: one of `templates` with each `{param}` / `{*rest}` filled with a fuzzed segment,
/// or an arbitrary path.
fn path(templates: Vec<&'static str>) -> impl Strategy<Value = String> {
    let filled = (
        prop::sample::select(templates),
        prop::collection::vec(segment(), 4),
        any::<bool>(),
    )
        .prop_map(|(template, segments, trailing_slash)| {
            let mut segments = segments.into_iter();
            let mut out: String = template
                .split('/')
                .map(|part| {
                    if part.starts_with('{') {
                        segments.next().unwrap_or_default()
                    } else {
                        part.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            if trailing_slash {
                out.push('/');
            }
            out
        });
    let arbitrary = prop::collection::vec(segment(), 0..6)
        .prop_map(|segments| format!("/{}", segments.join("/")));
    prop_oneof![4 => filled, 1 => arbitrary]
}

/// A query string (without `?`), names from the routes' parameters and arbitrary ones.
fn query() -> impl Strategy<Value = Option<String>> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            "limit", "cursor", "since", "until", "at", "after", "before", "type", "types",
            "interface", "instance", "source", "format", "page",
        ]).prop_map(str::to_owned),
        1 => segment(),
    ];
    prop::option::weighted(
        0.7,
        prop::collection::vec((name, segment()), 0..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
    )
}

/// A header value: usual ones, arbitrary visible ASCII, and bytes beyond ASCII.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "1.0", "0.3", "2.0", "", "ktwin.real.city-pole", "ktwin.store.city-pole",
            "ktwin.command.city-pole.reset", "pole-1", "2024-01-01T00:00:00Z", "not a time",
            "application/json", "*/*",
        ]).prop_map(HeaderValue::from_static),
        2 => "[ -~]{0,64}".prop_map(|s| HeaderValue::from_str(&s).expect("visible ASCII")),
        1 => prop::collection::vec(0x80u8..=0xff, 1..8)
            .prop_map(|b| HeaderValue::from_bytes(&b).expect("obs-text is allowed")),
    ]
}

fn content_type() -> impl Strategy<Value = Option<HeaderValue>> {
    prop::option::weighted(
        0.8,
        prop_oneof![
            4 => prop::sample::select(vec![
                "application/json",
                "application/cloudevents+json",
                "application/cloudevents+json; charset=utf-8",
                "application/cloudevents-batch+json",
                "text/plain",
                "application/octet-stream",
                "multipart/form-data; boundary=x",
            ]).prop_map(HeaderValue::from_static),
            1 => header_value(),
        ],
    )
}

fn headers() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let ce_name = prop::sample::select(vec![
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "ce-ktwinextra",
        "accept",
        "if-none-match",
        "cookie",
        "x-forwarded-for",
    ]);
    (
        content_type(),
        prop::collection::vec((ce_name, header_value()), 0..7),
        any::<bool>(),
    )
        .prop_map(|(content_type, ce, well_formed)| {
            let mut out = Vec::new();
            if let Some(value) = content_type {
                out.push((CONTENT_TYPE, value));
            }
            if well_formed {
                // A binary-mode CloudEvent most of whose attributes make sense, so handlers
                // past the decoding are reached too.
                for (name, value) in [
                    ("ce-specversion", "1.0"),
                    ("ce-id", "fuzz-1"),
                    ("ce-source", "pole-1"),
                    ("ce-type", "ktwin.real.city-pole"),
                ] {
                    out.push((
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    ));
                }
            }
            for (name, value) in ce {
                out.push((HeaderName::from_static(name), value));
            }
            out
        })
}

/// Arbitrary JSON, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A structured-mode CloudEvent with arbitrary attribute values.
fn structured_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![json!("1.0"), json!("0.3"), json!(1), json!(null)]),
        prop_oneof![
            json_value(),
            Just(json!("ktwin.real.city-pole")),
            Just(json!("ktwin.store.city-pole"))
        ],
        prop_oneof![json_value(), Just(json!("pole-1"))],
        json_value(),
        json_value(),
    )
        .prop_map(|(specversion, ty, source, time, data)| {
            json!({
                "specversion": specversion, "id": "fuzz-2", "type": ty, "source": source,
                "time": time, "datacontenttype": "application/json", "data": data,
            })
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 0..256),
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        3 => structured_event().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(structured_event(), 0..4)
            .prop_map(|v| Value::Array(v).to_string().into_bytes()),
        // Past every service's body limit (1 MiB by default).
        1 => Just(vec![b'{'; 1024 * 1024 + 1]),
    ]
}

/// Requests aimed at `templates` (route templates as the router spells them).
pub fn requests(templates: &[&'static str]) -> impl Strategy<Value = FuzzRequest> + use<> {
    let method = prop::sample::select(vec![
        Method::GET,
        Method::GET,
        Method::POST,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]);
    let credential = prop::sample::select(vec![
        Credential::Valid,
        Credential::Valid,
        Credential::Valid,
        Credential::Missing,
        Credential::Garbage,
    ]);
    let garbage = prop_oneof![
        "Bearer [ -~]{0,40}".prop_map(|s| HeaderValue::from_str(&s).expect("visible ASCII")),
        header_value(),
    ];
    (
        method,
        path(templates.to_vec()),
        query(),
        headers(),
        (credential, garbage),
        body(),
    )
        .prop_map(
            |(method, path, query, headers, (credential, garbage_authorization), body)| {
                let target = match query {
                    Some(query) => format!("{path}?{query}"),
                    None => path,
                };
                FuzzRequest {
                    method,
                    target,
                    headers,
                    credential,
                    garbage_authorization,
                    body,
                }
            },
        )
}

/// Whether an answer follows the rule of the module documentation; `Err` says why not. The
/// answer to a `HEAD` has no body, so only its status and content type are checked.
pub fn check_answer(
    method: &Method,
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    if !status.is_client_error() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        ));
    }
    if !content_type.is_some_and(|t| t.starts_with("application/problem+json")) {
        return Err(format!(
            "answered {status} with content type {content_type:?}, not a problem: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        ));
    }
    if method == Method::HEAD {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(problem)) if problem.get("status") == Some(&json!(status.as_u16())) => {
            Ok(())
        }
        _ => Err(format!(
            "answered {status} with a problem body that is not a problem object: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        )),
    }
}

/// Sends `request` to `app` in-process and checks the answer (the body of a success is not
/// read: it may be an endless stream).
pub async fn send(app: &Router, request: Request<Body>) -> Result<(), String> {
    let method = request.method().clone();
    let answer = tokio::time::timeout(HANG, app.clone().oneshot(request))
        .await
        .map_err(|_| format!("no answer within {HANG:?}"))?;
    let response = match answer {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = tokio::time::timeout(HANG, response.into_body().collect())
        .await
        .map_err(|_| format!("{status}: its body did not end within {HANG:?}"))?
        .map_err(|err| format!("{status}: reading its body: {err}"))?
        .to_bytes();
    check_answer(&method, status, content_type.as_deref(), &body)
}

/// Sends `request` over HTTP to the server at `base` (`http://host:port`) and checks the answer
/// as [`send`] does.
pub async fn send_http(
    client: &reqwest::Client,
    base: &str,
    request: &FuzzRequest,
    token: Option<&str>,
) -> Result<(), String> {
    let (parts, body) = request.to_request(token).into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map_err(|err| format!("building the body: {err}"))?
        .to_bytes();
    let large = body.len() > EARLY_ANSWER_BYTES;
    let sent = client
        .request(parts.method.clone(), format!("{base}{}", request.target))
        .headers(parts.headers)
        .body(body)
        .timeout(HANG)
        .send()
        .await;
    let sent = match sent {
        Ok(sent) => sent,
        // A server may answer (401, 413) before reading a large body and close the connection
        // while the client still writes it (HTTP/1.1 allows it); the client then sees a reset
        // instead of the answer. The server must still be up.
        Err(_) if large && still_up(client, base).await => return Ok(()),
        Err(err) => return Err(format!("no answer: {}", error_chain(&err))),
    };
    let status = sent.status();
    if status.is_success() {
        return Ok(());
    }
    let content_type = sent
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = sent
        .bytes()
        .await
        .map_err(|err| format!("{status}: reading its body: {err}"))?;
    check_answer(&parts.method, status, content_type.as_deref(), &body)
}

/// Bodies above this size may be refused before they are read (see [`send_http`]).
const EARLY_ANSWER_BYTES: usize = 64 * 1024;

async fn still_up(client: &reqwest::Client, base: &str) -> bool {
    let health = client
        .get(format!("{base}/health"))
        .timeout(HANG)
        .send()
        .await;
    health.is_ok_and(|answer| answer.status().is_success())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    chain
}

/// Cases to run: [`CASES_VAR`] or [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var(CASES_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The runtime a fuzzed app runs on (two workers, I/O and time): [`fuzz_router`] drives it
/// from a plain test.
///
/// # Panics
/// When the runtime cannot be built (the machine is out of threads).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs [`cases`] requests aimed at `templates` through `app` in-process on `runtime` (the one
/// the app's tasks run on), presenting `token` where a request carries a valid credential;
/// panics with the smallest failing request. Call it from a plain (non-async) test.
pub fn fuzz_router(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    templates: &[&'static str],
    token: Option<&str>,
) {
    fuzz(templates, |request| {
        runtime.block_on(send(app, request.to_request(token)))
    });
}

/// Runs [`cases`] requests aimed at `templates` through `check`; panics with the smallest
/// request `check` refuses.
pub fn fuzz(templates: &[&'static str], check: impl Fn(&FuzzRequest) -> Result<(), String>) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&requests(templates), |request| {
        check(&request).map_err(|why| {
            let target: String = request.target.chars().take(300).collect();
            TestCaseError::fail(format!(
                "{} {target} ({} body bytes): {why}",
                request.method,
                request.body.len()
            ))
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
