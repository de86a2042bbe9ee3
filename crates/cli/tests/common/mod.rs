//! What the `ktwin up` tests of the binary share: a copy of an example project, the running
//! `ktwin up` process with everything it printed, and the secrets it created on first start.

#![allow(
    dead_code,
    reason = "each test binary including this module uses a part of it"
)]

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
pub fn copy_project(from: &Path, to: &Path) {
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

/// A `ktwin up` process; killed when dropped.
pub struct Up {
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
    /// Starts `ktwin up project` on free ports with `args` and `RUST_LOG=rust_log`.
    pub fn start(project: &Path, args: &[&str], rust_log: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktwin"))
            .args(["up", project.to_str().unwrap()])
            .args(args)
            .args(["--port", "0", "--mqtt-port", "0"])
            .env("RUST_LOG", rust_log)
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

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The rest of the first start-up line beginning with `prefix`, once printed.
    async fn printed(&mut self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            let output = self.output();
            if let Some(rest) = output.lines().find_map(|line| line.strip_prefix(prefix)) {
                return rest.trim().to_owned();
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ktwin up exited:\n{output}"
            );
            // A guard against a hang, not a performance bound.
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "ktwin up did not start:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The base URL of the APIs, once `ktwin up` printed it.
    pub async fn base_url(&mut self) -> String {
        let graph = self.printed("twin graph").await;
        graph
            .strip_suffix("/api/v1/twin-graph")
            .unwrap_or_else(|| panic!("unexpected twin graph line {graph:?}"))
            .to_owned()
    }

    /// Host and port of the embedded MQTT broker, once `ktwin up` printed them.
    pub async fn mqtt_address(&mut self) -> (String, u16) {
        let line = self.printed("MQTT broker").await;
        let address = line
            .strip_prefix("mqtt://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected MQTT broker line {line:?}"));
        let (host, port) = address.rsplit_once(':').unwrap();
        (host.to_owned(), port.parse().unwrap())
    }

    /// Stops it like Ctrl-C and waits for it to exit.
    pub async fn stop(&mut self) {
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

    /// Kills it with SIGKILL (no shutdown hook runs) and waits for it to exit.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The trimmed content of the secret file `path`.
pub fn read_secret(path: &Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.trim().to_owned()
}
