//! Unix sockets: a socket file outside the sandbox (a container runtime's, a database's)
//! cannot be reached, while socket pairs, which pipes to child processes use, still work.

use std::os::unix::net::UnixListener;

use super::{PYTHON, Workspace, assert_success, run, stdout};

/// Connects to the Unix socket at the path given as its argument and says whether it could.
const CONNECT: &str = r#"
import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
    print("connected")
except OSError as error:
    print("refused:", error)
"#;

#[tokio::test]
async fn a_socket_file_outside_the_sandbox_cannot_be_reached() {
    let elsewhere = tempfile::tempdir().unwrap();
    let path = elsewhere.path().join("host.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let path = path.to_str().unwrap();
    let workspace = Workspace::new();

    let confined = run(PYTHON, &["-c", CONNECT, path], &workspace.policy()).await;
    assert_success(&confined);
    assert!(
        stdout(&confined).starts_with("refused: [Errno 13]"),
        "{}",
        stdout(&confined)
    );

    // Allowed Unix sockets, the same process reaches it: the filter is what stops it.
    let mut open = workspace.policy();
    open.unix_sockets = true;
    let unconfined = run(PYTHON, &["-c", CONNECT, path], &open).await;
    assert_eq!(stdout(&unconfined), "connected\n");
}

#[tokio::test]
async fn child_processes_and_their_pipes_still_work() {
    let workspace = Workspace::new();
    let script = "const { execFileSync, spawnSync } = require('child_process'); \
        const echoed = execFileSync('/bin/echo', ['piped']).toString().trim(); \
        const python = spawnSync('python3', ['-c', 'import subprocess; \
            print(subprocess.run([\"echo\", \"nested\"], capture_output=True, text=True).stdout.strip())']); \
        console.log(echoed, python.stdout.toString().trim())";

    let output = run("node", &["-e", script], &workspace.policy()).await;

    assert_success(&output);
    assert_eq!(stdout(&output), "piped nested\n");
}
