//! The dashboard's browser session: the page hands the local user's browser a cookie, the
//! API accepts it in place of a bearer token, and neither other machines, rebound DNS names
//! nor other sites' pages get to use it.

mod router;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Method, Request, StatusCode, header};
use ktwin_auth::local::{BrowserSession, SESSION_COOKIE};
use ktwin_auth::{AuthLayer, Authenticator, Reloading};
use router::{app, policy, tokens};
use tower::ServiceExt as _;

fn page(session: BrowserSession) -> Router {
    Router::new().route("/", get(|| async { "<html>" })).layer(
        axum::middleware::from_fn_with_state(Arc::new(session), BrowserSession::offer),
    )
}

async fn cookie_for(page: &Router, peer: &str, host: &str) -> Option<String> {
    let mut request = Request::get("/")
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = page.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .headers()
        .get(header::SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn only_a_loopback_browser_naming_a_loopback_host_gets_the_session() {
    let tokens = tokens();
    let page = page(BrowserSession::new(&tokens.admin).unwrap());
    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "[::1]:8080",
        "LOCALHOST",
    ] {
        let cookie = cookie_for(&page, "127.0.0.1:50000", host)
            .await
            .unwrap_or_else(|| panic!("no cookie for Host {host}"));
        assert!(
            cookie.starts_with(&format!("{SESSION_COOKIE}={}", tokens.admin.expose())),
            "{cookie}"
        );
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
    }
    // Another machine, and a DNS name rebound to 127.0.0.1, get the page without a session.
    assert_eq!(
        cookie_for(&page, "192.0.2.7:50000", "127.0.0.1:8080").await,
        None
    );
    assert_eq!(
        cookie_for(&page, "127.0.0.1:50000", "evil.example:8080").await,
        None
    );
    assert_eq!(
        cookie_for(&page, "127.0.0.1:50000", "127.0.0.1.evil.example").await,
        None
    );
}

async fn call_with_cookie(
    app: &Router,
    method: Method,
    path: &str,
    cookie: &str,
    origin: &[(&str, &str)],
) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(
            header::COOKIE,
            format!("theme=dark; {SESSION_COOKIE}={cookie}"),
        );
    for (name, value) in origin {
        request = request.header(*name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_api_takes_the_cookie_but_not_from_another_site() {
    let tokens = tokens();
    let admin = tokens.admin.expose().to_owned();
    let with_cookie = app(AuthLayer::new(
        Authenticator::new(Reloading::fixed(tokens.set.clone()))
            .with_session_cookie(SESSION_COOKIE),
        policy(),
    ));
    let path = "/twins/city-pole/pole-1";
    assert_eq!(
        call_with_cookie(&with_cookie, Method::GET, path, &admin, &[]).await,
        StatusCode::OK
    );
    for same_site in [
        [("sec-fetch-site", "same-origin")].as_slice(),
        [("origin", "http://127.0.0.1:8080")].as_slice(),
    ] {
        assert_eq!(
            call_with_cookie(&with_cookie, Method::DELETE, path, &admin, same_site).await,
            StatusCode::OK,
            "{same_site:?}"
        );
    }
    // A change requested by another site's page (or with no sign of its origin) carries no
    // credential.
    for cross_site in [
        [("sec-fetch-site", "cross-site")].as_slice(),
        [("sec-fetch-site", "same-site")].as_slice(),
        [("origin", "http://localhost:3000")].as_slice(),
        [].as_slice(),
    ] {
        assert_eq!(
            call_with_cookie(&with_cookie, Method::DELETE, path, &admin, cross_site).await,
            StatusCode::UNAUTHORIZED,
            "{cross_site:?}"
        );
    }
    assert_eq!(
        call_with_cookie(&with_cookie, Method::GET, path, "ktwin_forged", &[]).await,
        StatusCode::UNAUTHORIZED
    );
    // Without the option, the cookie is no credential at all.
    let without = app(AuthLayer::new(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
    ));
    assert_eq!(
        call_with_cookie(&without, Method::GET, path, &admin, &[]).await,
        StatusCode::UNAUTHORIZED
    );
}
