//! OIDC JWTs against a key set served over HTTP: valid, expired, badly signed, wrong issuer or
//! audience, key rotation, and the refetch floor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::{HeaderValue, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ktwin_auth::{
    AuthLayer, Authenticator, JwtError, OidcConfig, OidcValidator, PrincipalKind, Reloading,
    RoutePolicy, Scope, TokenSet, TwinParam,
};
use serde_json::json;
use tower::ServiceExt as _;

const ISSUER: &str = "https://login.example.test/realms/city";
const AUDIENCE: &str = "ktwin";

struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

fn signing_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate().unwrap();
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    SigningKey {
        kid: kid.to_owned(),
        key,
        jwk,
    }
}

#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(jwks: Jwks) -> String {
    let app = Router::new()
        .route(
            "/jwks",
            get(|State(jwks): State<Jwks>| async move {
                jwks.fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(JwkSet {
                    keys: jwks.keys.lock().unwrap().clone(),
                })
            }),
        )
        .with_state(jwks);
    format!("{}/jwks", ktwin_testkit::serve(app).await)
}

fn token(key: &SigningKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.key).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(scope: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 600, "scope": scope})
}

fn config(url: &str) -> OidcConfig {
    let mut config = OidcConfig::new(ISSUER, AUDIENCE, url);
    config.leeway = Duration::ZERO;
    config
}

#[tokio::test]
async fn valid_tokens_map_claims_to_scope_and_grant() {
    let key = signing_key("k1");
    let jwks = Jwks::default();
    jwks.keys.lock().unwrap().push(key.jwk.clone());
    let validator = OidcValidator::new(config(&serve_jwks(jwks.clone()).await));

    let mut with_grant = claims("openid ktwin:read ktwin:write");
    with_grant["ktwin_interfaces"] = json!(["city-pole"]);
    with_grant["ktwin_instance_prefixes"] = json!(["pole-"]);
    let principal = validator.validate(&token(&key, with_grant)).await.unwrap();
    assert_eq!(principal.scope, Scope::Write);
    assert_eq!(principal.name, format!("{ISSUER}#alice"));
    assert!(principal.allows_twin("city-pole", "pole-7"));
    assert!(!principal.allows_twin("parking", "pole-7"));
    assert!(matches!(principal.kind, PrincipalKind::Jwt { .. }));

    let mut array_scope = claims("");
    array_scope["scope"] = json!(["ktwin:admin"]);
    assert_eq!(
        validator
            .validate(&token(&key, array_scope))
            .await
            .unwrap()
            .scope,
        Scope::Admin
    );

    let none = validator
        .validate(&token(&key, claims("openid profile")))
        .await;
    assert!(matches!(none, Err(JwtError::NoScope(_))), "{none:?}");
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "keys are cached");
}

#[tokio::test]
async fn expired_badly_signed_and_misaddressed_tokens_are_refused() {
    let key = signing_key("k1");
    let jwks = Jwks::default();
    jwks.keys.lock().unwrap().push(key.jwk.clone());
    let validator = OidcValidator::new(config(&serve_jwks(jwks).await));

    let mut expired = claims("ktwin:read");
    expired["exp"] = json!(now() - 10);
    let err = validator.validate(&token(&key, expired)).await.unwrap_err();
    assert!(err.to_string().contains("ExpiredSignature"), "{err}");

    // Same kid, another key: the signature does not verify.
    let impostor = signing_key("k1");
    let err = validator
        .validate(&token(&impostor, claims("ktwin:admin")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InvalidSignature"), "{err}");

    let mut other_issuer = claims("ktwin:read");
    other_issuer["iss"] = json!("https://evil.example.test");
    assert!(
        validator
            .validate(&token(&key, other_issuer))
            .await
            .is_err()
    );
    let mut other_audience = claims("ktwin:read");
    other_audience["aud"] = json!("someone-else");
    assert!(
        validator
            .validate(&token(&key, other_audience))
            .await
            .is_err()
    );
    let mut no_exp = claims("ktwin:read");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(validator.validate(&token(&key, no_exp)).await.is_err());

    // HMAC with a made-up secret is not on the allow-list.
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("ktwin:admin"),
        &EncodingKey::from_secret(b"guess").unwrap(),
    )
    .unwrap();
    assert!(matches!(
        validator.validate(&hmac).await,
        Err(JwtError::Algorithm(Algorithm::HS256))
    ));
    assert!(matches!(
        validator.validate("not.a.jwt").await,
        Err(JwtError::Malformed)
    ));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_made_up_kids_do_not_hammer_the_issuer() {
    let old = signing_key("old");
    let jwks = Jwks::default();
    jwks.keys.lock().unwrap().push(old.jwk.clone());
    let mut config = config(&serve_jwks(jwks.clone()).await);
    config.min_refetch_interval = Duration::from_millis(300);
    let validator = OidcValidator::new(config);
    validator
        .validate(&token(&old, claims("ktwin:read")))
        .await
        .unwrap();

    // The issuer rotates: the new kid is unknown until the floor has passed.
    let new = signing_key("new");
    *jwks.keys.lock().unwrap() = vec![new.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(350)).await;
    validator
        .validate(&token(&new, claims("ktwin:read")))
        .await
        .unwrap();
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // A burst of made-up kids causes no fetch within the floor.
    for i in 0..50 {
        let stranger = signing_key(&format!("made-up-{i}"));
        let err = validator
            .validate(&token(&stranger, claims("ktwin:read")))
            .await
            .unwrap_err();
        assert!(matches!(err, JwtError::UnknownKey), "{err}");
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_and_jwt_refusals_are_401_through_the_layer() {
    let key = signing_key("k1");
    let jwks = Jwks::default();
    jwks.keys.lock().unwrap().push(key.jwk.clone());
    let policy = || {
        RoutePolicy::builder()
            .rule(&[], "/twins", Scope::Read, TwinParam::AllTwins)
            .build()
            .unwrap()
    };
    let app = |validator: OidcValidator| {
        Router::new()
            .route("/twins", get(|| async { "ok" }))
            .layer(AuthLayer::new(
                Authenticator::new(Reloading::fixed(TokenSet::default()))
                    .with_oidc(Arc::new(validator)),
                policy(),
            ))
    };
    let call = |app: Router, jwt: String| async move {
        let request = http::Request::get("/twins")
            .header(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {jwt}")).unwrap(),
            )
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    };
    let up = app(OidcValidator::new(config(&serve_jwks(jwks).await)));
    assert_eq!(
        call(up.clone(), token(&key, claims("ktwin:read"))).await,
        StatusCode::OK
    );
    let mut expired = claims("ktwin:read");
    expired["exp"] = json!(now() - 10);
    assert_eq!(
        call(up.clone(), token(&key, expired)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(up.clone(), token(&signing_key("k1"), claims("ktwin:read"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(up, token(&key, claims("openid"))).await,
        StatusCode::FORBIDDEN
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let down = app(OidcValidator::new(config(&closed)));
    assert_eq!(
        call(down, token(&key, claims("ktwin:read"))).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
