//! `ktwin up --sim` end to end with auth on (the default) and every log on (`RUST_LOG=debug`):
//! the simulator logs in to the MQTT gate with the credential created on first start and its
//! messages are stored; API calls are made with the admin token, the dashboard's session cookie
//! and a wrong token; then nothing the run printed may contain the admin token, the session
//! token or the simulator's password.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ktwin_auth::local::{ADMIN_TOKEN_FILE, SESSION_COOKIE, SIMULATOR_PASSWORD_FILE};

/// What the child printed, on both streams.
type Output = Arc<Mutex<String>>;

fn collect(mut stream: impl std::io::Read + Send + 'static, output: Output) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(read) = stream.read(&mut chunk) {
            if read == 0 {
                break;
            }
            output
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..read]));
        }
    });
}

/// Copies the example project without its state (`.ktwin/`) and build output.
fn copy_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".ktwin" || name == "target" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_project(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

struct Up {
    child: Child,
    output: Output,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    fn start(project: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktwin"))
            .args(["up", project.to_str().unwrap(), "--sim", "--speedup", "20"])
            .args(["--port", "0", "--mqtt-port", "0"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Output::default();
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Self { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The base URL of the APIs, once `ktwin up` printed it.
    async fn base_url(&mut self) -> String {
        let started = Instant::now();
        loop {
            let output = self.output();
            if let Some(url) = output
                .lines()
                .find_map(|line| line.strip_prefix("twin graph"))
                .and_then(|rest| rest.trim().strip_suffix("/api/v1/twin-graph"))
            {
                return url.to_owned();
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ktwin up exited:\n{output}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "ktwin up did not start:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it like Ctrl-C and waits for it to exit.
    async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ktwin up did not stop"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn read_secret(path: &Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.trim().to_owned()
}

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
    let mut up = Up::start(&project);
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
