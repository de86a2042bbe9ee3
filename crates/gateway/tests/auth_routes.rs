//! Every route of the gateway behind its access control, over HTTP: API tokens from a token
//! file and JWTs of an OIDC issuer (a local one serving its key set). No credential, an
//! unknown token, an expired or forged JWT → 401; a scope below the route's or a grant on other
//! twins → 403; the rate limit per credential → 429 with `Retry-After`, other credentials
//! unaffected. The table must name exactly the routes of the gateway's route policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ktwin_auth::{
    AuthLayer, AuthLimits, Authenticator, OidcConfig, OidcValidator, RateLimit, Reloading, Scope,
    TokenFile, TokenSet, TwinGrant,
};
use ktwin_gateway::{Apis, GatewayConfig, Upstreams, route_policy, router};
use ktwin_service::Readiness;
use ktwin_testkit::oidc::{AUDIENCE, TestIssuer};
use ktwin_testkit::route_auth::{Credentials, Needs, RouteCase, assert_covers, check_routes};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The gateway with every API on and no upstream (calls that pass the checks answer 503).
async fn gateway(authenticator: Authenticator, limits: AuthLimits) -> String {
    let config = GatewayConfig {
        apis: Apis {
            graph: true,
            event_store: true,
            commands: true,
        },
        upstreams: Upstreams::default(),
        body_limit: 64 * 1024,
        upstream_timeout: Duration::from_secs(5),
        upstream_token: None,
        trace_sampler: ktwin_events::trace::TraceSampler::default(),
    };
    let layer = AuthLayer::with_limits(authenticator, route_policy().build().unwrap(), limits);
    let app = router(config, layer, Readiness::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{address}")
}

fn routes() -> Vec<RouteCase> {
    let case = RouteCase::new;
    let twin = "/api/v1/twin-events/city-pole/pole-1";
    vec![
        case(
            Method::GET,
            "/api/v1/twin-graph",
            "/api/v1/twin-graph",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-graph/{interface}",
            "/api/v1/twin-graph/city-pole",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}",
            twin,
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}/latest",
            &format!("{twin}/latest"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twins/{interface}",
            "/api/v1/twins/city-pole",
            Needs::Read,
            true,
        ),
        case(
            Method::POST,
            "/api/v1/events/{interface}/{instance}",
            "/api/v1/events/city-pole/pole-1",
            Needs::Write,
            true,
        ),
        case(
            Method::POST,
            "/api/v1/commands/{interface}/{instance}/{command}",
            "/api/v1/commands/city-pole/pole-1/reboot",
            Needs::Write,
            true,
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_what_it_must_for_tokens_and_jwts() {
    let issuer = TestIssuer::start().await;
    let mut file = TokenFile::default();
    let admin = file
        .issue("admin", Scope::Admin, TwinGrant::all(), None)
        .unwrap();
    let writer = file
        .issue("writer", Scope::Write, TwinGrant::all(), None)
        .unwrap();
    let expired_token = file
        .issue(
            "expired",
            Scope::Admin,
            TwinGrant::all(),
            Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        )
        .unwrap();
    let oidc = OidcValidator::new(OidcConfig::new(&issuer.issuer, AUDIENCE, &issuer.jwks_url));
    let authenticator = Authenticator::new(Reloading::fixed(TokenSet::new(&file).unwrap()))
        .with_oidc(Arc::new(oidc));
    let base = gateway(authenticator, AuthLimits::default()).await;

    let mut outsider = issuer.claims("mallory", "ktwin:admin");
    outsider["ktwin_interfaces"] = json!(["no-such-interface"]);
    let mut wrong_audience = issuer.claims("alice", "ktwin:admin");
    wrong_audience["aud"] = json!("another-service");
    let credentials = Credentials {
        admin: admin.expose().to_owned(),
        // JWTs for the reader and the outsider, API tokens for the others: both paths checked.
        reader: issuer.sign(&issuer.claims("reader", "ktwin:read")),
        writer: writer.expose().to_owned(),
        outsider: issuer.sign(&outsider),
        invalid: vec![
            ("an unknown token", "ktwin_0123456789abcdef".to_owned()),
            ("an expired token", expired_token.expose().to_owned()),
            ("an expired JWT", issuer.expired("alice", "ktwin:admin")),
            (
                "a JWT signed with an unpublished key",
                issuer.forge(&issuer.claims("alice", "ktwin:admin")),
            ),
            ("a JWT for another audience", issuer.sign(&wrong_audience)),
        ],
    };
    let cases = routes();
    assert_covers(&cases, route_policy().build().unwrap().paths());
    check_routes(&base, &cases, &credentials).await;

    // A valid JWT granting no ktwin scope is forbidden, not unauthenticated.
    let no_scope = issuer.sign(&issuer.claims("bob", "openid profile"));
    let answer = reqwest::Client::new()
        .get(format!("{base}/api/v1/twin-graph"))
        .bearer_auth(no_scope)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // The probes stay open for the kubelet.
    for path in ["/health", "/ready", "/metrics"] {
        let answer = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_ne!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn a_credential_over_its_rate_is_answered_429_and_others_are_not() {
    let mut file = TokenFile::default();
    let busy = file
        .issue("busy", Scope::Read, TwinGrant::all(), None)
        .unwrap();
    let calm = file
        .issue("calm", Scope::Read, TwinGrant::all(), None)
        .unwrap();
    let authenticator = Authenticator::new(Reloading::fixed(TokenSet::new(&file).unwrap()));
    let limits = AuthLimits {
        per_principal: RateLimit::new(1, 3),
        failures_per_address: None,
    };
    let base = gateway(authenticator, limits).await;
    let client = reqwest::Client::new();
    let call = |token: String| {
        client
            .get(format!("{base}/api/v1/twin-graph"))
            .bearer_auth(token)
            .send()
    };
    // A burst of 3 is allowed, then one request a second: 20 at once go over.
    let mut limited = None;
    for _ in 0..20 {
        let answer = call(busy.expose().to_owned()).await.unwrap();
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the busy credential was limited");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let other = call(calm.expose().to_owned()).await.unwrap();
    assert_ne!(other.status(), StatusCode::TOO_MANY_REQUESTS);
}
