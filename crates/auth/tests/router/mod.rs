//! The router, route policy and tokens the auth-layer tests share.

#![allow(
    dead_code,
    reason = "each test binary including this module uses a part of it"
)]

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use ktwin_auth::{
    AuthLayer, Principal, RoutePolicy, Scope, Secret, TokenFile, TokenSet, TwinGrant, TwinParam,
};
use tower::ServiceExt as _;

pub fn policy() -> RoutePolicy {
    let twin = TwinParam::Twin {
        interface: "interface",
        instance: "instance",
    };
    RoutePolicy::builder()
        .public("/health")
        .rule(
            &[Method::GET],
            "/twins/{interface}/{instance}",
            Scope::Read,
            twin.clone(),
        )
        .rule(
            &[Method::DELETE],
            "/twins/{interface}/{instance}",
            Scope::Write,
            twin,
        )
        .rule(&[Method::GET], "/twins", Scope::Read, TwinParam::AllTwins)
        .rule(
            &[Method::POST],
            "/events",
            Scope::Write,
            TwinParam::Filtered,
        )
        .build()
        .unwrap()
}

pub fn app(layer: AuthLayer) -> Router {
    let who = |Extension(principal): Extension<Principal>| async move { principal.name };
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/twins/{interface}/{instance}", get(who).delete(who))
        .route("/twins", get(who))
        .route(
            "/events",
            post(|Extension(principal): Extension<Principal>| async move {
                // A handler that filters by the twins its body names.
                if principal.allows_twin("city-pole", "pole-1") {
                    "accepted"
                } else {
                    "filtered"
                }
            }),
        )
        .route("/admin-only", get(who))
        .layer(layer)
}

pub struct Tokens {
    pub admin: Secret,
    pub reader: Secret,
    pub writer_pole: Secret,
    pub set: TokenSet,
}

pub fn tokens() -> Tokens {
    let mut file = TokenFile::default();
    let admin = file
        .issue("admin", Scope::Admin, TwinGrant::all(), None)
        .unwrap();
    let reader = file
        .issue("reader", Scope::Read, TwinGrant::all(), None)
        .unwrap();
    let pole = TwinGrant {
        interfaces: ["city-pole".to_owned()].into(),
        instance_prefixes: vec!["pole-".to_owned()],
    };
    let writer_pole = file.issue("pole-writer", Scope::Write, pole, None).unwrap();
    Tokens {
        admin,
        reader,
        writer_pole,
        set: TokenSet::new(&file).unwrap(),
    }
}

pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&Secret>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}
