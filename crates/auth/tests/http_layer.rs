//! The auth layer in front of a real router: every refusal and what handlers receive.

mod router;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use ktwin_auth::{AuthLayer, AuthLimits, Authenticator, RateLimit, Reloading, Secret};
use router::{app, call, policy, tokens};
use tower::ServiceExt as _;

#[tokio::test]
async fn no_or_unknown_token_is_401_with_a_bearer_challenge() {
    let tokens = tokens();
    let app = app(AuthLayer::new(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
    ));
    let (status, headers, body) = call(&app, Method::GET, "/twins/city-pole/pole-1", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"ktwin\"");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert!(body.contains("no bearer token"), "{body}");

    let forged = Secret::new("ktwin_forged");
    let (status, headers, _) =
        call(&app, Method::GET, "/twins/city-pole/pole-1", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        !challenge.contains("forged"),
        "the challenge must not echo the token: {challenge}"
    );

    // Public routes need nothing.
    assert_eq!(
        call(&app, Method::GET, "/health", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_scope_or_a_twin_outside_the_grant_is_403() {
    let tokens = tokens();
    let app = app(AuthLayer::new(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
    ));
    let (status, headers, body) = call(
        &app,
        Method::DELETE,
        "/twins/city-pole/pole-1",
        Some(&tokens.reader),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert!(body.contains("needs write"), "{body}");

    let (status, _, body) = call(
        &app,
        Method::DELETE,
        "/twins/city-pole/pole-1",
        Some(&tokens.writer_pole),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pole-writer"));
    for outside in ["/twins/parking/pole-1", "/twins/city-pole/lamp-1", "/twins"] {
        let (status, _, body) = call(&app, Method::GET, outside, Some(&tokens.writer_pole)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{outside}");
        assert!(body.contains("may not touch"), "{body}");
    }
    // Routes the policy does not name need admin.
    assert_eq!(
        call(&app, Method::GET, "/admin-only", Some(&tokens.writer_pole))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, Method::GET, "/admin-only", Some(&tokens.admin))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn handlers_get_the_principal_to_filter_with() {
    let tokens = tokens();
    let app = app(AuthLayer::new(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
    ));
    let (status, _, body) = call(&app, Method::POST, "/events", Some(&tokens.writer_pole)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "accepted"));
    let (status, _, body) = call(&app, Method::POST, "/events", Some(&tokens.admin)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "accepted"));
    assert_eq!(
        call(&app, Method::POST, "/events", Some(&tokens.reader))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let tokens = tokens();
    let limits = AuthLimits {
        per_principal: RateLimit::new(1, 3),
        failures_per_address: None,
    };
    let app = app(AuthLayer::with_limits(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
        limits,
    ));
    for _ in 0..3 {
        assert_eq!(
            call(&app, Method::GET, "/twins", Some(&tokens.reader))
                .await
                .0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = call(&app, Method::GET, "/twins", Some(&tokens.reader)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(body.contains("rate limit"), "{body}");
    assert_eq!(
        call(&app, Method::GET, "/twins", Some(&tokens.admin))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let tokens = tokens();
    let limits = AuthLimits {
        per_principal: None,
        failures_per_address: RateLimit::new(1, 2),
    };
    let app = app(AuthLayer::with_limits(
        Authenticator::new(Reloading::fixed(tokens.set)),
        policy(),
        limits,
    ));
    let from = |address: [u8; 4]| {
        let connect_info = axum::extract::ConnectInfo(std::net::SocketAddr::from((address, 40000)));
        let app = app.clone();
        move |token: Option<Secret>| {
            let mut request = Request::get("/twins");
            if let Some(token) = &token {
                request =
                    request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
            }
            let mut request = request.body(Body::empty()).unwrap();
            request.extensions_mut().insert(connect_info);
            let app = app.clone();
            async move { app.oneshot(request).await.unwrap().status() }
        }
    };
    let guesser = from([10, 0, 0, 1]);
    let wrong = || Some(Secret::new("ktwin_guess"));
    assert_eq!(guesser(wrong()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(guesser(wrong()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(guesser(wrong()).await, StatusCode::TOO_MANY_REQUESTS);
    // A valid token is never held back by the failures of its address, nor is another address.
    assert_eq!(guesser(Some(tokens.reader.clone())).await, StatusCode::OK);
    assert_eq!(from([10, 0, 0, 2])(wrong()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn insecure_mode_lets_everyone_in_as_anonymous() {
    let app = app(AuthLayer::insecure(policy()));
    let (status, _, body) = call(&app, Method::DELETE, "/twins/a/b", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}
