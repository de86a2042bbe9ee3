//! `ktwin up --sim` end to end with auth on (the default) and every log on (`RUST_LOG=debug`):
//! the simulator logs in to the MQTT gate with the credential created on first start and its
//! messages are stored; API calls are made with the admin token, the dashboard's session cookie
//! and a wrong token; then nothing the run printed may contain the admin token, the session
//! token or the simulator's password.

mod common;

use std::time::{Duration, Instant};

use common::{Up, copy_project, read_secret};
use ktwin_auth::local::{ADMIN_TOKEN_FILE, SESSION_COOKIE, SIMULATOR_PASSWORD_FILE};

/// The session value of the cookie the dashboard's page sets.
async fn session_cookie(client: &reqwest::Client, base: &str) -> String {
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    cookie
        .strip_prefix(&format!("{SESSION_COOKIE}="))
        .and_then(|rest| rest.split(';').next())
        .expect("the page sets the session cookie")
        .to_owned()
}

/// `text` without ANSI colour sequences (`ESC [ … m`), which the log writer puts between a
/// field's name and its value.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_to_end_run_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("smart-city");
    copy_project(&ktwin_testkit::example_project(), &project);
    let mut up = Up::start(&project, &["--sim", "--speedup", "20"], "debug");
    let base = up.base_url().await;
    let auth = project.join(".ktwin").join("auth");
    let admin = read_secret(&auth.join(ADMIN_TOKEN_FILE));
    let simulator = read_secret(&auth.join(SIMULATOR_PASSWORD_FILE));
    let client = reqwest::Client::new();

    // Without a token the API refuses; with the admin token, the session cookie and a wrong
    // token, calls are made (and access-logged).
    let refused = client
        .get(format!("{base}/api/v1/twin-graph"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let session = session_cookie(&client, &base).await;
    let with_cookie = client
        .get(format!("{base}/api/v1/twin-graph"))
        .header("cookie", format!("{SESSION_COOKIE}={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let wrong = client
        .get(format!("{base}/api/v1/twin-graph"))
        .bearer_auth(format!("{admin}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The simulator's messages arrive: it logged in to the gate with its credential.
    let started = Instant::now();
    loop {
        let events: serde_json::Value = client
            .get(format!("{base}/api/v1/twin-events?limit=1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if events.as_array().is_some_and(|events| !events.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no device message was stored:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    up.stop().await;

    let output = without_colours(&up.output());
    assert!(
        output.contains("auth on") && output.contains(ADMIN_TOKEN_FILE),
        "the start-up output says how to authenticate:\n{output}"
    );
    assert!(
        output.contains("ktwin::access")
            && (output.contains("principal=admin") || output.contains("principal=\"admin\"")),
        "the access log ran (so its silence about secrets means something)"
    );
    for (what, secret) in [
        ("the admin token", &admin),
        ("the session token", &session),
        ("the simulator's password", &simulator),
    ] {
        assert!(secret.len() >= 20, "{what} looks like a secret");
        assert!(
            !output.contains(secret.as_str()),
            "{what} appears in the output of ktwin up"
        );
    }
}
