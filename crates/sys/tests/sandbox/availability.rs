//! Availability: what the probe finds, and a policy needing a missing protection is refused
//! rather than run less protected.

use portcullis_sys::sandbox::{
    FilesystemRule, Protection, Protections, SandboxError, probe, sandboxed_command,
};

use super::{SHELL, Workspace, assert_success, protections, run_with, stdout};

#[test]
fn the_probe_finds_this_machines_protections() {
    let found = probe();
    // The machines the tests run on have Landlock and network namespaces; every other test
    // of the sandbox needs them.
    assert!(found.landlock_abi.is_some_and(|abi| abi >= 1), "{found}");
    assert!(found.network_isolation.is_some(), "{found}");
    assert!(found.seccomp, "{found}");
    assert!(found.rlimits);
    let line = found.to_string();
    assert!(line.starts_with("sandbox: landlock ABI "), "{line}");
    assert!(line.contains("namespace"), "{line}");
    assert!(line.contains("seccomp"), "{line}");
    assert!(line.contains("rlimits"), "{line}");
    assert_eq!(found, probe(), "probing twice finds the same");
}

fn refusal(
    policy: &portcullis_sys::sandbox::SandboxPolicy,
    protections: &Protections,
) -> Protection {
    match sandboxed_command(SHELL, ["-c", "true"], policy, protections) {
        Err(SandboxError::Unavailable { protection }) => protection,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("built a command without the protection it needs"),
    }
}

#[test]
fn a_policy_needing_a_missing_protection_is_refused() {
    let workspace = Workspace::new();
    let policy = workspace.policy();
    assert!(sandboxed_command(SHELL, ["-c", "true"], &policy, &protections()).is_ok());

    let without_landlock = Protections {
        landlock_abi: None,
        ..protections()
    };
    assert_eq!(refusal(&policy, &without_landlock), Protection::Filesystem);

    let without_namespaces = Protections {
        network_isolation: None,
        ..protections()
    };
    assert_eq!(refusal(&policy, &without_namespaces), Protection::Network);

    let without_seccomp = Protections {
        seccomp: false,
        ..protections()
    };
    assert_eq!(
        refusal(&policy, &without_seccomp),
        Protection::UnixSocketFilter
    );

    let without_rlimits = Protections {
        rlimits: false,
        ..protections()
    };
    assert_eq!(
        refusal(&policy, &without_rlimits),
        Protection::ResourceLimits
    );

    let mut counting = policy.clone();
    counting.limits.processes = Some(64);
    let without_process_limit = Protections {
        process_limit: false,
        ..protections()
    };
    assert_eq!(
        refusal(&counting, &without_process_limit),
        Protection::ProcessLimit
    );

    let error = SandboxError::Unavailable {
        protection: Protection::Network,
    };
    assert_eq!(
        error.to_string(),
        "the sandbox policy needs network isolation (network namespace), which this system does not provide"
    );
}

#[tokio::test]
async fn a_policy_asking_for_nothing_runs_without_any_protection() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.network = true;
    policy.filesystem = FilesystemRule::Unrestricted;
    policy.unix_sockets = true;
    policy.limits = Default::default();

    let output = run_with(SHELL, &["-c", "echo ran"], &policy, &Protections::NONE).await;

    assert_success(&output);
    assert_eq!(stdout(&output), "ran\n");
}

#[test]
fn a_path_that_does_not_exist_is_reported() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.allow_read("/does/not/exist/portcullis");
    match sandboxed_command(SHELL, ["-c", "true"], &policy, &protections()) {
        Err(SandboxError::Path { path, .. }) => {
            assert_eq!(path, std::path::Path::new("/does/not/exist/portcullis"))
        }
        other => panic!("expected a path error, got {:?}", other.map(|_| ())),
    }
}
