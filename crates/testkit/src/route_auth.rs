//! The table-driven check of a service's access control over real HTTP: for every route of a
//! table, no credential and unknown or invalid credentials are 401, a scope below the route's
//! or a grant that does not cover its twins is 403, and a credential with every right gets
//! past the checks (whatever the handler then answers).

use reqwest::{Method, StatusCode};

/// The lowest scope a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `admin`.
    Admin,
}

/// One route of the table.
#[derive(Debug, Clone)]
pub struct RouteCase {
    /// The method.
    pub method: Method,
    /// The path template as the service's route policy names it (`/a/{b}`).
    pub template: &'static str,
    /// A concrete path of it.
    pub path: String,
    /// What it needs; `None` = public.
    pub needs: Option<Needs>,
    /// Whether it touches twins (so a grant on other twins is refused).
    pub touches_twins: bool,
}

impl RouteCase {
    /// A route needing `needs`; `touches_twins` as the policy's target says.
    pub fn new(
        method: Method,
        template: &'static str,
        path: &str,
        needs: Needs,
        touches_twins: bool,
    ) -> Self {
        Self {
            method,
            template,
            path: path.to_owned(),
            needs: Some(needs),
            touches_twins,
        }
    }

    /// A public route.
    pub fn public(template: &'static str, path: &str) -> Self {
        Self {
            method: Method::GET,
            template,
            path: path.to_owned(),
            needs: None,
            touches_twins: false,
        }
    }
}

/// The bearer credentials the check presents.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Every right.
    pub admin: String,
    /// `read` on every twin.
    pub reader: String,
    /// `write` on every twin.
    pub writer: String,
    /// `admin`, but only on twins no route of the table names.
    pub outsider: String,
    /// Credentials that must be refused as unauthenticated, by description (unknown tokens,
    /// expired or forged JWTs, …).
    pub invalid: Vec<(&'static str, String)>,
}

async fn status(
    client: &reqwest::Client,
    base: &str,
    case: &RouteCase,
    token: Option<&str>,
) -> StatusCode {
    let mut request = client.request(case.method.clone(), format!("{base}{}", case.path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{} {}: {err}", case.method, case.path))
        .status()
}

/// Runs every check of every case against the service at `base`; panics naming the first
/// route and credential that got the wrong answer.
pub async fn check_routes(base: &str, cases: &[RouteCase], credentials: &Credentials) {
    let client = reqwest::Client::new();
    for case in cases {
        let what = format!("{} {}", case.method, case.path);
        let answer = |token| status(&client, base, case, token);
        let Some(needs) = case.needs else {
            let got = answer(None).await;
            assert!(
                got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN,
                "{what} is public, got {got}"
            );
            continue;
        };
        assert_eq!(
            answer(None).await,
            StatusCode::UNAUTHORIZED,
            "{what} without a token"
        );
        for (description, token) in &credentials.invalid {
            assert_eq!(
                answer(Some(token)).await,
                StatusCode::UNAUTHORIZED,
                "{what} with {description}"
            );
        }
        if needs >= Needs::Write {
            assert_eq!(
                answer(Some(&credentials.reader)).await,
                StatusCode::FORBIDDEN,
                "{what} with read scope"
            );
        }
        if needs >= Needs::Admin {
            assert_eq!(
                answer(Some(&credentials.writer)).await,
                StatusCode::FORBIDDEN,
                "{what} with write scope"
            );
        }
        if case.touches_twins {
            assert_eq!(
                answer(Some(&credentials.outsider)).await,
                StatusCode::FORBIDDEN,
                "{what} with a grant on other twins"
            );
        }
        let got = answer(Some(&credentials.admin)).await;
        assert!(
            got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN,
            "{what} with every right, got {got}"
        );
    }
}

/// Asserts that the table names exactly the templates of a route policy (`paths`), so a route
/// added to a service without a row here fails the test.
pub fn assert_covers(cases: &[RouteCase], paths: &[String]) {
    let mut named: Vec<&str> = cases.iter().map(|case| case.template).collect();
    named.sort_unstable();
    named.dedup();
    let mut policy: Vec<&str> = paths.iter().map(String::as_str).collect();
    policy.sort_unstable();
    assert_eq!(
        named, policy,
        "the table and the route policy name the same routes"
    );
}

/// Every route of the event store's route policy (`ktwin_store::route_policy`), with concrete
/// paths on the twin `interface`/`instance`: shared by the tests of the standalone store and
/// of `ktwin up`, which serves the same routes.
pub fn store_routes(interface: &str, instance: &str) -> Vec<RouteCase> {
    let twin = format!("/api/v1/twin-events/{interface}/{instance}");
    let case = RouteCase::new;
    vec![
        case(
            Method::GET,
            "/api/v1/twin-events",
            "/api/v1/twin-events",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/traces/{id}",
            "/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736",
            Needs::Read,
            true,
        ),
        case(
            Method::POST,
            "/api/v1/twin-events",
            "/api/v1/twin-events",
            Needs::Write,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}",
            &twin,
            Needs::Read,
            true,
        ),
        case(
            Method::DELETE,
            "/api/v1/twin-events/{interface}/{instance}",
            &twin,
            Needs::Write,
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
            "/api/v1/twin-events/{interface}/{instance}/state",
            &format!("{twin}/state"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twins/{interface}",
            &format!("/api/v1/twins/{interface}"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/dead-letters",
            "/api/v1/dead-letters",
            Needs::Read,
            true,
        ),
        case(
            Method::DELETE,
            "/api/v1/dead-letters",
            "/api/v1/dead-letters",
            Needs::Admin,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/dead-letters/usage",
            "/api/v1/dead-letters/usage",
            Needs::Read,
            false,
        ),
        case(
            Method::DELETE,
            "/api/v1/dead-letters/{seq}",
            "/api/v1/dead-letters/1",
            Needs::Admin,
            true,
        ),
        RouteCase::public("/api/v1/openapi.json", "/api/v1/openapi.json"),
    ]
}

/// Every route of the graph service's route policy (`ktwin_graph::route_policy`), with
/// concrete paths on the twin `interface`/`instance`.
pub fn graph_routes(interface: &str, instance: &str) -> Vec<RouteCase> {
    let case = RouteCase::new;
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
            &format!("/api/v1/twin-graph/{interface}"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-graph/instances/{instance}",
            &format!("/api/v1/twin-graph/instances/{instance}"),
            Needs::Read,
            true,
        ),
        RouteCase::public(
            "/api/v1/twin-graph/openapi.json",
            "/api/v1/twin-graph/openapi.json",
        ),
    ]
}
