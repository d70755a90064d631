//! Privileges: a sandboxed process holds no capability, even when the gateway runs as root,
//! and cannot gain any through `exec`.

use super::{SHELL, Workspace, assert_success, run};

/// The value of `field` in a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
}

#[tokio::test]
async fn a_sandboxed_process_holds_no_capability_and_cannot_gain_one() {
    let workspace = Workspace::new();

    let output = run(SHELL, &["-c", "cat /proc/self/status"], &workspace.policy()).await;

    assert_success(&output);
    let status = String::from_utf8_lossy(&output.stdout);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&status, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");

    // The gateway's own capabilities, for comparison: the sandbox removed whatever it had.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(status_field(&own, "CapEff"), "0000000000000000");
    }
}
