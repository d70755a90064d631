//! The sandbox for child processes, driven as the gateway drives it: a policy, a command,
//! a spawn, and what the process could and could not do.

#![allow(clippy::expect_used, clippy::panic)]

mod availability;
mod environment;
mod files;
mod limits;
mod network;
mod node;
mod privileges;
mod process_group;
mod unix_sockets;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use portcullis_sys::sandbox::{Protections, SandboxPolicy, probe, sandboxed_command};
use tempfile::TempDir;

/// The Python of the system directories (readable under the default policy).
const PYTHON: &str = "/usr/bin/python3";
const SHELL: &str = "/bin/sh";

/// What this machine provides, probed once.
fn protections() -> Protections {
    static PROTECTIONS: OnceLock<Protections> = OnceLock::new();
    *PROTECTIONS.get_or_init(probe)
}

/// A working directory and a private temporary directory for one sandboxed process, removed
/// when dropped.
struct Workspace {
    working: TempDir,
    temp: TempDir,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            working: tempfile::tempdir().unwrap(),
            temp: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.working.path()
    }

    fn policy(&self) -> SandboxPolicy {
        SandboxPolicy::new(self.working.path(), self.temp.path())
    }

    fn temp_dir(&self) -> PathBuf {
        self.temp.path().to_path_buf()
    }
}

/// Runs `program` with `args` under `policy` and the probed protections, with no input, and
/// collects its output (at most 60 seconds).
async fn run(program: &str, args: &[&str], policy: &SandboxPolicy) -> Output {
    run_with(program, args, policy, &protections()).await
}

async fn run_with(
    program: &str,
    args: &[&str],
    policy: &SandboxPolicy,
    protections: &Protections,
) -> Output {
    let mut command = sandboxed_command(program, args, policy, protections).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the sandboxed process finished within a minute")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with the process's output unless it succeeded.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "the process failed ({}): stdout {:?}, stderr {:?}",
        output.status,
        stdout(output),
        stderr(output)
    );
}
