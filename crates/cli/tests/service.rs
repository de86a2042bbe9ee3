//! `ktwin service <handler>` serves a built-in handler over the Knative contract: the process
//! the smart-city example's twin services run on a cluster.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn lists_the_built_in_handlers_and_refuses_unknown_ones() {
    let list = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .args(["service", "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(text.lines().any(|l| l == "smart-city/pole"), "{text}");
    let unknown = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .args(["service", "smart-city/nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let error = String::from_utf8(unknown.stderr).unwrap();
    assert!(
        error.contains("smart-city/nope") && error.contains("smart-city/pole"),
        "{error}"
    );
}

#[tokio::test]
async fn serves_a_handler_over_the_knative_contract() {
    let port = free_port();
    let _service = Running(
        Command::new(env!("CARGO_BIN_EXE_ktwin"))
            .args(["service", "smart-city/pole"])
            .env("PORT", port.to_string())
            .env("KTWIN_GRAPH", r#"{"twinInstances":[]}"#)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the service never became ready");
    // Not a CloudEvent: refused for good (400), so Knative does not redeliver it.
    let bad = client.post(&base).body("hello").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    // A binary-mode CloudEvent the pole does not subscribe to is acknowledged.
    let other = client
        .post(&base)
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "ktwin.real.somebody-else")
        .header("ce-source", "x-1")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(other.status().is_success(), "{}", other.status());
}
