//! Twin services as child processes: spawn the service's command with `PORT` and the
//! `KTWIN_*` variables, wait until it answers HTTP, prefix its output, stop it gracefully.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::console::Console;
use crate::pool::{LaunchError, Launcher, Replica};

/// How long a stopped replica's last output may take to reach the console.
const OUTPUT_FLUSH: Duration = Duration::from_secs(5);

/// How to run one twin service locally: a program, its arguments, environment and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCommand {
    /// The executable (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment added to the runtime's own (the platform's `KTWIN_*` variables come last,
    /// so they win over user values of the same name).
    pub env: Vec<(String, String)>,
    /// Working directory (the project directory, usually).
    pub cwd: Option<PathBuf>,
}

impl ServiceCommand {
    /// Runs `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The command line as a user would type it (for start-up output and errors).
    pub fn display(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Starts replicas of one service as child processes.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    /// Service name, the prefix of its output lines.
    pub name: String,
    /// What to run.
    pub command: ServiceCommand,
    /// Platform variables (`KTWIN_BROKER`, `KTWIN_EVENT_STORE`, …), set after the command's own.
    pub platform_env: Vec<(String, String)>,
    /// Where output lines go.
    pub console: Console,
    /// How long a replica may take to answer HTTP after it started.
    pub ready_timeout: Duration,
    /// How long a replica may take to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
}

impl ProcessLauncher {
    /// A launcher with default timeouts (30 s to become ready, 10 s to stop).
    pub fn new(
        name: &str,
        command: ServiceCommand,
        platform_env: Vec<(String, String)>,
        console: Console,
    ) -> Self {
        Self {
            name: name.to_owned(),
            command,
            platform_env,
            console,
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        }
    }
}

#[async_trait]
impl Launcher for ProcessLauncher {
    async fn launch(&self, index: u32) -> Result<Box<dyn Replica>, LaunchError> {
        let port =
            free_port().map_err(|err| LaunchError::new(format!("no free TCP port: {err}")))?;
        let label = format!("{}-{index}", self.name);
        let mut command = Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .envs(self.platform_env.iter().map(|(k, v)| (k, v)))
            .env(ktwin_events::env::PORT, port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.command.cwd {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|err| {
            LaunchError::new(format!("cannot start `{}`: {err}", self.command.display()))
        })?;
        let mut output = Vec::new();
        if let Some(out) = child.stdout.take() {
            output.push(tokio::spawn(forward_lines(
                out,
                label.clone(),
                self.console.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            output.push(tokio::spawn(forward_lines(
                err,
                label.clone(),
                self.console.clone(),
            )));
        }
        let replica = ProcessReplica {
            label,
            url: format!("http://127.0.0.1:{port}/"),
            pid: child.id(),
            child: Arc::new(Mutex::new(child)),
            exited: Arc::new(AtomicBool::new(false)),
            stop_grace: self.stop_grace,
            output: Mutex::new(output),
        };
        match wait_ready(&replica, self.ready_timeout).await {
            Ok(()) => Ok(Box::new(replica)),
            Err(err) => {
                replica.kill().await;
                Err(LaunchError::new(format!(
                    "`{}` on port {port}: {err}",
                    self.command.display()
                )))
            }
        }
    }
}

/// One running child process serving a twin service over HTTP.
pub struct ProcessReplica {
    label: String,
    url: String,
    pid: Option<u32>,
    child: Arc<Mutex<Child>>,
    exited: Arc<AtomicBool>,
    stop_grace: Duration,
    /// The tasks copying its stdout and stderr to the console.
    output: Mutex<Vec<JoinHandle<()>>>,
}

impl ProcessReplica {
    async fn try_exit_status(&self) -> Option<ExitStatus> {
        let status = self.child.lock().await.try_wait().ok().flatten();
        if status.is_some() {
            self.exited.store(true, Ordering::Release);
        }
        status
    }

    /// Waits until what the exited process wrote last is on the console (its pipes close at
    /// exit; a grandchild still holding them is not waited for beyond a bound).
    async fn flush_output(&self) {
        let tasks = std::mem::take(&mut *self.output.lock().await);
        for task in tasks {
            let _ = tokio::time::timeout(OUTPUT_FLUSH, task).await;
        }
    }

    async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        self.exited.store(true, Ordering::Release);
    }
}

#[async_trait]
impl Replica for ProcessReplica {
    fn url(&self) -> &str {
        &self.url
    }

    fn label(&self) -> &str {
        &self.label
    }

    async fn is_alive(&self) -> bool {
        !self.exited.load(Ordering::Acquire) && self.try_exit_status().await.is_none()
    }

    async fn stop(self: Box<Self>) {
        if self.try_exit_status().await.is_some() {
            return;
        }
        if let Some(pid) = self.pid {
            terminate(pid);
        }
        let waited = {
            let mut child = self.child.lock().await;
            tokio::time::timeout(self.stop_grace, child.wait()).await
        };
        match waited {
            Ok(_) => self.exited.store(true, Ordering::Release),
            Err(_) => {
                tracing::warn!(replica = %self.label, grace = ?self.stop_grace, "replica ignored SIGTERM, killing it");
                self.kill().await;
            }
        }
        self.flush_output().await;
    }
}

/// Asks process `pid` to terminate (SIGTERM), so it can drain like a Knative pod does.
fn terminate(pid: u32) {
    let pid = sysinfo::Pid::from_u32(pid);
    let Ok(mut system) = sysinfo::System::new() else {
        return;
    };
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    if let Some(process) = system.process(pid) {
        process.kill_with(sysinfo::Signal::Term);
    }
}

/// A TCP port free at the time of the call on the loopback interface.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Why a replica did not become ready.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    /// The HTTP client for the health probe could not be built.
    #[error("cannot build the health probe's HTTP client: {0}")]
    Client(reqwest::Error),
    /// The process ended first.
    #[error("exited with {0} before becoming ready")]
    Exited(ExitStatus),
    /// The time ran out; the last probe's outcome says why.
    #[error("not ready after {timeout:?} ({last})")]
    Timeout {
        /// How long it was given.
        timeout: Duration,
        /// What the last probe saw.
        last: LastProbe,
    },
}

/// What the last health probe saw.
#[derive(Debug)]
enum LastProbe {
    /// No probe has answered or failed yet.
    NoAnswer,
    /// `/health` answered with a server error.
    Status(reqwest::StatusCode),
    /// The request failed.
    Failed(reqwest::Error),
}

impl std::fmt::Display for LastProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LastProbe::NoAnswer => f.write_str("no answer yet"),
            LastProbe::Status(status) => write!(f, "GET /health answered {status}"),
            LastProbe::Failed(err) => write!(f, "{err}"),
        }
    }
}

/// Polls the replica until it answers HTTP on `/health` (any status below 500 counts: a
/// service without that route is still serving), it exits, or `timeout` passes.
async fn wait_ready(replica: &ProcessReplica, timeout: Duration) -> Result<(), NotReady> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(NotReady::Client)?;
    let health = format!("{}health", replica.url);
    let started = Instant::now();
    let mut last = LastProbe::NoAnswer;
    while started.elapsed() < timeout {
        if let Some(status) = replica.try_exit_status().await {
            return Err(NotReady::Exited(status));
        }
        match client.get(&health).send().await {
            Ok(response) if response.status().as_u16() < 500 => return Ok(()),
            Ok(response) => last = LastProbe::Status(response.status()),
            Err(err) => last = LastProbe::Failed(err),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(NotReady::Timeout { timeout, last })
}

/// Copies `reader` to the console line by line with the replica's prefix.
async fn forward_lines(reader: impl AsyncRead + Unpin, label: String, console: Console) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        console.line(&label, &line);
    }
}
