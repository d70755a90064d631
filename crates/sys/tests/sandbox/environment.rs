//! The environment: the process sees exactly the policy's variables, and cannot read the
//! gateway's through /proc either.

use std::sync::Once;

use super::{SHELL, Workspace, assert_success, run, stderr, stdout};

const MASTER_KEY: &str = "PORTCULLIS_MASTER_KEY";
const MASTER_KEY_VALUE: &str = "sk-master-never-shared";

/// Puts a master key into this test process's environment, as the gateway has one.
fn set_master_key() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: the tests of this binary touch the environment only through std (which
        // serializes its own access) and call no C function that reads it concurrently.
        unsafe { std::env::set_var(MASTER_KEY, MASTER_KEY_VALUE) };
    });
}

#[tokio::test]
async fn the_process_sees_only_the_variables_of_its_policy() {
    set_master_key();
    assert_eq!(std::env::var(MASTER_KEY).unwrap(), MASTER_KEY_VALUE);
    let workspace = Workspace::new();
    let script = r#"echo "key=${PORTCULLIS_MASTER_KEY-unset} home=$HOME""#;

    let output = run(SHELL, &["-c", script], &workspace.policy()).await;
    assert_success(&output);
    let home = workspace.dir().display();
    assert_eq!(stdout(&output), format!("key=unset home={home}\n"));

    let mut passing = workspace.policy();
    passing.set_env(MASTER_KEY, "given on purpose");
    let output = run(SHELL, &["-c", script], &passing).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        format!("key=given on purpose home={home}\n")
    );
}

#[tokio::test]
async fn the_gateways_environment_cannot_be_read_through_proc() {
    let workspace = Workspace::new();
    let gateway = std::process::id().to_string();
    // Its own environment is readable: /proc is open, the gateway's entry is not.
    let script = r#"grep -aq HOME= /proc/self/environ && echo own && cat "/proc/$1/environ""#;

    let output = run(SHELL, &["-c", script, "sh", &gateway], &workspace.policy()).await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "own\n");
    assert!(
        stderr(&output).contains("Permission denied"),
        "{}",
        stderr(&output)
    );

    // An ordinary child of the gateway reads it: the sandbox is what keeps it closed (for a
    // gateway running as root: the sandboxed process holds none of its capabilities).
    let ordinary = std::process::Command::new(SHELL)
        .args(["-c", script, "sh", &gateway])
        .output()
        .unwrap();
    assert!(ordinary.status.success(), "{ordinary:?}");
    assert!(String::from_utf8_lossy(&ordinary.stdout).contains("PATH="));
}
