//! A stdio server: a program the gateway starts and talks to over its standard input and
//! output, one JSON-RPC message per line.
//!
//! The program gets a clean environment (its configured `env` plus `PATH`, `HOME`, `LANG`,
//! `LC_*` and `TMPDIR` from the gateway's; nothing else, so the gateway's own secrets never
//! reach it), its configured working directory or a private one, and a process group of its
//! own, killed as a whole when it fails or the connection shuts down. With `sandbox: true`
//! (the default) it runs in the sandbox of `portcullis-sys` ([`confinement`] says what it may
//! do; `HOME` and `TMPDIR` are then in the connection's private directory): a server whose
//! sandbox needs a protection this system lacks is not started, and every call to it fails
//! with [`UpstreamError::Unavailable`] naming that protection. Its standard error is
//! logged at debug level, line by line. A line that is not JSON-RPC, or longer than 16 MiB, is
//! logged and skipped.
//!
//! A supervisor restarts the program when it exits or closes its output (waiting 0.5 s, then
//! twice as long after each failure up to 30 s, and 0.5 s again once a run stayed healthy for
//! 60 s), performing the `initialize` handshake again; meanwhile calls fail with
//! [`UpstreamError::Unavailable`].

mod confinement;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use portcullis_sys::sandbox::{Protections, SandboxError};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{broadcast, mpsc, watch};

use super::shared::{
    BACKOFF_START, Call, Core, HEALTHY_AFTER, MAX_MESSAGE_BYTES, initialize_params, next_backoff,
    notification_bytes, reason_of, response_bytes,
};
use super::{Related, Reply, ServerInfo, Status, Upstream, UpstreamError};
use crate::config::StdioSpec;
use crate::jsonrpc::{Id, Message};

/// The variables a stdio server inherits from the gateway, besides its configured ones
/// (`LC_*` too).
const INHERITED: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];
/// The longest line of a server's standard error that is logged; the rest is cut.
const MAX_STDERR_LINE: usize = 4096;
/// Messages queued for a server's standard input.
const WRITE_QUEUE: usize = 64;

/// A connection to a stdio server.
#[derive(Debug)]
pub struct StdioUpstream {
    core: Arc<Core>,
    process: Arc<Process>,
    supervisor: tokio::task::AbortHandle,
}

/// What the supervisor and the connection share about the running program.
#[derive(Debug)]
struct Process {
    spec: StdioSpec,
    timeout: Duration,
    /// The working directory: the configured one, or the private one.
    workdir: PathBuf,
    /// The connection's own directory, removed when it ends: made when there is no configured
    /// working directory or the program runs in the sandbox (its home and temporary
    /// directories are there).
    private: Option<PathBuf>,
    /// The protections the sandbox uses; `None`: the program runs unconfined.
    protections: Option<Protections>,
    /// The running program's standard input, once it is initialized.
    input: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// The running program's process id (and process group), 0 when none runs.
    pid: AtomicU32,
    stop: watch::Sender<bool>,
}

impl Process {
    fn input(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        self.input.lock().ok().and_then(|i| i.clone())
    }

    fn set_input(&self, input: Option<mpsc::Sender<Vec<u8>>>) {
        if let Ok(mut slot) = self.input.lock() {
            *slot = input;
        }
    }

    fn kill_group(&self) {
        kill_group(self.pid.swap(0, Ordering::Relaxed));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(private) = &self.private {
            let _ = std::fs::remove_dir_all(private);
        }
    }
}

/// Kills the process group `pid` leads (0: none).
fn kill_group(pid: u32) {
    let Some(group) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

impl StdioUpstream {
    /// Starts `spec` as the server `name`, calls bounded by `timeout` (the handshake too).
    /// The program starts in the background: the status is [`Status::Starting`] until it
    /// answered `initialize`. Must be called within a Tokio runtime.
    ///
    /// With `sandbox: true`, the system's protections are probed (once per process, logged)
    /// and the sandbox is checked first: when it needs a protection the system lacks, or a
    /// path it allows cannot be opened, the server is not started and this fails with
    /// [`UpstreamError::Unavailable`] saying why.
    pub fn start(name: String, spec: StdioSpec, timeout: Duration) -> Result<Self, UpstreamError> {
        let protections = spec.sandbox.then(confinement::protections);
        Self::start_with(name, spec, timeout, protections)
    }

    /// [`StdioUpstream::start`] with the sandbox's `protections` given (`None`: unconfined).
    fn start_with(
        name: String,
        spec: StdioSpec,
        timeout: Duration,
        protections: Option<Protections>,
    ) -> Result<Self, UpstreamError> {
        let core = Core::new(name);
        let (workdir, private) = match (&spec.cwd, protections.is_some()) {
            (Some(dir), false) => (dir.clone(), None),
            (cwd, _) => {
                let own = private_workdir(core.server()).map_err(|e| {
                    core.unavailable(format!(
                        "its working directory could not be made ({})",
                        e.kind()
                    ))
                })?;
                (cwd.clone().unwrap_or_else(|| own.clone()), Some(own))
            }
        };
        let process = Arc::new(Process {
            spec,
            timeout,
            workdir,
            private,
            protections,
            input: Mutex::new(None),
            pid: AtomicU32::new(0),
            stop: watch::channel(false).0,
        });
        if process.protections.is_some() {
            command(&process)
                .map_err(|e| core.unavailable(format!("it cannot run in its sandbox: {e}")))?;
        }
        let detached = Arc::clone(&process);
        core.set_detached(move |bytes| {
            if let Some(input) = detached.input() {
                let _ = input.try_send(bytes);
            }
        });
        let supervisor =
            tokio::spawn(supervise(Arc::clone(&core), Arc::clone(&process))).abort_handle();
        Ok(Self {
            core,
            process,
            supervisor,
        })
    }

    /// The running program's process id (the id of its process group too), if one runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.process.pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Requests waiting for their reply.
    pub fn pending_requests(&self) -> usize {
        self.core.pending_count()
    }

    /// Waits until the status is `status`, at most `within`; whether it came.
    pub async fn wait_for(&self, status: Status, within: Duration) -> bool {
        self.core.wait_for(status, within).await
    }

    async fn write(&self, bytes: Vec<u8>) -> Result<(), UpstreamError> {
        let input = self
            .process
            .input()
            .ok_or_else(|| self.core.unavailable("its process is not running"))?;
        input
            .send(bytes)
            .await
            .map_err(|_| self.core.unavailable("its process exited"))
    }

    /// Writes a message, waiting at most the connection's timeout for room.
    async fn write_within(&self, bytes: Vec<u8>) -> Result<(), UpstreamError> {
        let timeout = self.process.timeout;
        tokio::time::timeout(timeout, self.write(bytes))
            .await
            .map_err(|_| self.core.timeout(timeout))?
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self.supervisor.abort();
        self.process.kill_group();
    }
}

#[async_trait]
impl Upstream for StdioUpstream {
    fn name(&self) -> &str {
        self.core.server()
    }

    async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        related: Option<Related>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let mut call = self.core.begin(method, params, related)?;
        let exchange = async {
            self.core.ready().await?;
            self.write(call.take_bytes()).await?;
            call.reply().await
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        match outcome {
            Ok(reply) => reply,
            Err(_) => {
                call.timed_out();
                Err(self.core.timeout(timeout))
            }
        }
    }

    async fn notify(&self, method: &str, params: Option<&RawValue>) -> Result<(), UpstreamError> {
        self.write_within(notification_bytes(method, params)).await
    }

    async fn respond(&self, id: Id, reply: Reply) -> Result<(), UpstreamError> {
        self.write_within(response_bytes(&id, &reply)).await
    }

    fn info(&self) -> Option<Arc<ServerInfo>> {
        self.core.info()
    }

    fn notifications(&self) -> broadcast::Receiver<Message> {
        self.core.subscribe()
    }

    fn status(&self) -> Status {
        self.core.status()
    }

    async fn shutdown(&self) {
        self.core.set_status(Status::Stopped);
        self.process.stop.send_replace(true);
        self.supervisor.abort();
        self.process.set_input(None);
        self.process.kill_group();
        self.core.fail_all("it was shut down");
    }
}

/// The command that starts the program: its clean environment, its working directory, a
/// process group of its own, standard streams piped, killed when dropped; in its sandbox
/// unless it runs unconfined (there the sandbox makes it lead a session and process group of
/// its own).
fn command(process: &Process) -> Result<Command, SandboxError> {
    let spec = &process.spec;
    let mut command = match &process.protections {
        Some(protections) => {
            let private = process.private.as_deref().unwrap_or(&process.workdir);
            confinement::command(spec, &process.workdir, private, protections)?
        }
        None => {
            let mut command = Command::new(&spec.command);
            command
                .args(&spec.args)
                .env_clear()
                .envs(inherited_environment())
                .envs(&spec.env)
                .current_dir(&process.workdir)
                .process_group(0);
            command
        }
    };
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// The gateway's variables a stdio server inherits: `PATH`, `HOME`, `LANG`, `LC_*` and
/// `TMPDIR`.
fn inherited_environment() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        name.to_str()
            .is_some_and(|n| INHERITED.contains(&n) || n.starts_with("LC_"))
    })
}

/// A fresh directory only the gateway's user can enter.
fn private_workdir(server: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static MADE: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    loop {
        let dir = base.join(format!(
            "portcullis-mcp-{server}-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Runs the program until the connection stops, restarting it with backoff.
async fn supervise(core: Arc<Core>, process: Arc<Process>) {
    let mut stop = process.stop.subscribe();
    let mut backoff = BACKOFF_START;
    loop {
        let (ready_at, ended) = run_once(&core, &process, &mut stop).await;
        process.set_input(None);
        process.kill_group();
        core.fail_all("its process exited");
        if *stop.borrow() {
            return;
        }
        core.set_failing(ended);
        if ready_at.is_some_and(|at| at.elapsed() >= HEALTHY_AFTER) {
            backoff = BACKOFF_START;
        }
        tracing::info!(server = %core.server(), after_ms = backoff.as_millis() as u64, "restarting MCP server");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        backoff = next_backoff(backoff);
    }
}

/// Starts the program once, initializes it and serves it until it ends; when it became
/// ready, and why it ended.
async fn run_once(
    core: &Arc<Core>,
    process: &Arc<Process>,
    stop: &mut watch::Receiver<bool>,
) -> (Option<Instant>, String) {
    let spawned = match command(process) {
        Ok(mut command) => command
            .spawn()
            .map_err(|e| format!("its program could not be started ({})", e.kind())),
        Err(e) => Err(format!("it cannot run in its sandbox: {e}")),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(reason) => {
            tracing::warn!(server = %core.server(), %reason, "MCP server could not be started");
            return (None, reason);
        }
    };
    process
        .pid
        .store(child.id().unwrap_or(0), Ordering::Relaxed);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return (None, "its standard streams could not be opened".to_owned());
    };
    let (input, queue) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_lines(stdin, queue));
    let log = tokio::spawn(log_stderr(core.server().to_owned(), stderr));

    let reader = read_messages(Arc::clone(core), BufReader::new(stdout));
    let exited = wait_exit(&mut child);
    let handshake = handshake(core, &input, process.timeout);
    let stopped = async {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(reader, exited, handshake, stopped);

    let mut ready_at = None;
    let end = tokio::select! {
        _ = &mut reader => "closed its output",
        _ = &mut exited => "exited",
        _ = &mut stopped => "was stopped",
        initialized = &mut handshake => match initialized {
            Ok(()) => {
                ready_at = Some(Instant::now());
                process.set_input(Some(input.clone()));
                core.set_status(Status::Ready);
                tracing::info!(server = %core.server(), "MCP server ready");
                tokio::select! {
                    _ = &mut reader => "closed its output",
                    _ = &mut exited => "exited",
                    _ = &mut stopped => "was stopped",
                }
            }
            Err(e) => {
                tracing::warn!(server = %core.server(), error = %e, "MCP server failed to initialize");
                writer.abort();
                log.abort();
                return (ready_at, reason_of(&e));
            }
        },
    };
    tracing::info!(server = %core.server(), "MCP server {end}");
    writer.abort();
    log.abort();
    (ready_at, format!("its process {end}"))
}

async fn wait_exit(child: &mut Child) {
    let _ = child.wait().await;
}

/// The `initialize` handshake over `input`, within `timeout`.
async fn handshake(
    core: &Arc<Core>,
    input: &mpsc::Sender<Vec<u8>>,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let params = initialize_params();
    let mut call: Call = core.begin("initialize", Some(&params), None)?;
    let exchange = async {
        let bytes = call.take_bytes();
        call.never_cancel();
        input
            .send(bytes)
            .await
            .map_err(|_| core.unavailable("its process exited"))?;
        let reply = call.reply().await?;
        core.accept_initialize(reply)?;
        input
            .send(notification_bytes("notifications/initialized", None))
            .await
            .map_err(|_| core.unavailable("its process exited"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| core.timeout(timeout))?
}

/// Writes queued messages, one per line.
async fn write_lines(mut stdin: ChildStdin, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut bytes) = queue.recv().await {
        bytes.push(b'\n');
        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// Reads messages until the output closes.
async fn read_messages(core: Arc<Core>, mut stdout: impl AsyncBufRead + Unpin) {
    let mut line = Vec::new();
    loop {
        match read_line(&mut stdout, &mut line, MAX_MESSAGE_BYTES).await {
            Ok(Line::End) | Err(_) => return,
            Ok(Line::TooLong) => {
                tracing::warn!(server = %core.server(), limit = MAX_MESSAGE_BYTES, "MCP server wrote a line too long; skipped");
            }
            Ok(Line::Complete) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match Message::parse(&line) {
                    Ok(message) => core.dispatch(message, None),
                    Err(e) => {
                        tracing::warn!(server = %core.server(), error = %e, "MCP server wrote a line that is not JSON-RPC; skipped");
                    }
                }
            }
        }
    }
}

/// Logs the program's standard error, line by line.
async fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        match read_line(&mut stderr, &mut line, MAX_STDERR_LINE).await {
            Ok(Line::End) | Err(_) => return,
            Ok(Line::Complete) => {
                tracing::debug!(server = %server, line = %String::from_utf8_lossy(&line), "MCP server stderr");
            }
            Ok(Line::TooLong) => {
                tracing::debug!(server = %server, line = %String::from_utf8_lossy(&line), "MCP server stderr (cut)");
            }
        }
    }
}

/// How a line read ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (without its newline) is in the buffer.
    Complete,
    /// The line was longer than the limit: the buffer holds its first `limit` bytes, the rest
    /// was read and dropped.
    TooLong,
    /// The input ended (a last unterminated line counts as complete before that).
    End,
}

/// Reads one line into `line`, never holding more than `limit` bytes of it.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if line.is_empty() {
                Line::End
            } else {
                Line::Complete
            });
        }
        let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        let room = limit.saturating_sub(line.len());
        if chunk.len() > room {
            too_long = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = found.map_or(available.len(), |at| at + 1);
        input.consume(used);
        if found.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_whole_or_cut_at_the_limit() {
        let text: &[u8] = b"short\nthis one is too long\n\nlast";
        let mut input = BufReader::with_capacity(4, text);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut line, 8).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"short");
        assert_eq!(
            read_line(&mut input, &mut line, 8).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(line, b"this one");
        assert_eq!(
            read_line(&mut input, &mut line, 8).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"");
        assert_eq!(
            read_line(&mut input, &mut line, 8).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"last");
        assert_eq!(
            read_line(&mut input, &mut line, 8).await.unwrap(),
            Line::End
        );
    }

    #[test]
    fn only_the_basic_variables_are_inherited() {
        let names: Vec<String> = inherited_environment()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| INHERITED.contains(&n.as_str()) || n.starts_with("LC_"))
        );
    }
}
