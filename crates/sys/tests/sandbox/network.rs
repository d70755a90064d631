//! The network: without it, not even the host's loopback is reachable; with it, it is.

use portcullis_sys::sandbox::{NetworkIsolation, Protections, SandboxPolicy};
use tokio::net::TcpListener;

use super::{PYTHON, Workspace, protections, run_with, stdout};

/// Connects to 127.0.0.1 on the port given as its argument and says whether it could.
const CONNECT: &str = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    print("connected")
except OSError as error:
    print("unreachable:", error)
    sys.exit(3)
"#;

async fn connect_from_sandbox(policy: &SandboxPolicy, protections: &Protections) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let output = run_with(PYTHON, &["-c", CONNECT, &port], policy, protections).await;
    drop(listener);
    stdout(&output)
}

#[tokio::test]
async fn without_network_the_hosts_loopback_is_unreachable() {
    let workspace = Workspace::new();
    let policy = workspace.policy();
    assert!(!policy.network, "the default policy has no network");

    let answer = connect_from_sandbox(&policy, &protections()).await;
    assert!(answer.starts_with("unreachable:"), "{answer}");
}

#[tokio::test]
async fn with_network_the_hosts_loopback_is_reachable() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.network = true;

    let answer = connect_from_sandbox(&policy, &protections()).await;
    assert_eq!(answer, "connected\n");
}

#[tokio::test]
async fn a_user_namespace_isolates_the_network_as_well() {
    // The way a gateway without root isolates a process; root can take it too.
    let mut protections = protections();
    protections.network_isolation = Some(NetworkIsolation::UserNamespace);
    let workspace = Workspace::new();
    let policy = workspace.policy();

    let answer = connect_from_sandbox(&policy, &protections).await;
    assert!(answer.starts_with("unreachable:"), "{answer}");
}

#[tokio::test]
async fn isolation_does_not_rest_on_landlock_alone() {
    // Without Landlock's TCP rules, the network namespace alone keeps the loopback away.
    let mut protections = protections();
    protections.landlock_abi = None;
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.filesystem = portcullis_sys::sandbox::FilesystemRule::Unrestricted;

    let answer = connect_from_sandbox(&policy, &protections).await;
    assert!(answer.starts_with("unreachable:"), "{answer}");
}
