//! Files: the working and temporary directories are open, allowed paths are read-only,
//! everything else is out of reach.

use portcullis_sys::sandbox::FilesystemRule;

use super::{SHELL, Workspace, assert_success, run, stderr, stdout};

#[tokio::test]
async fn a_process_reads_and_writes_its_own_directories() {
    let workspace = Workspace::new();
    std::fs::write(workspace.dir().join("given.txt"), "given by the gateway\n").unwrap();
    let script = r#"cat given.txt && echo made > made.txt && cat made.txt \
        && echo scratch > "$TMPDIR/scratch.txt" && cat "$TMPDIR/scratch.txt" && rm made.txt"#;

    let output = run(SHELL, &["-c", script], &workspace.policy()).await;

    assert_success(&output);
    assert_eq!(stdout(&output), "given by the gateway\nmade\nscratch\n");
    assert!(workspace.temp_dir().join("scratch.txt").exists());
    assert!(!workspace.dir().join("made.txt").exists());
}

#[tokio::test]
async fn a_file_outside_the_allowed_paths_cannot_be_read() {
    let workspace = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.txt");
    std::fs::write(&secret, "not for the sandbox\n").unwrap();
    let secret = secret.to_str().unwrap();

    let confined = run(
        SHELL,
        &["-c", r#"cat "$1""#, "sh", secret],
        &workspace.policy(),
    )
    .await;
    assert!(!confined.status.success(), "read {:?}", stdout(&confined));
    assert_eq!(stdout(&confined), "");
    assert!(
        stderr(&confined).contains("Permission denied"),
        "{}",
        stderr(&confined)
    );

    // The same process without the filesystem rule reads it: the rule is what stops it.
    let mut open = workspace.policy();
    open.filesystem = FilesystemRule::Unrestricted;
    let unconfined = run(SHELL, &["-c", r#"cat "$1""#, "sh", secret], &open).await;
    assert_success(&unconfined);
    assert_eq!(stdout(&unconfined), "not for the sandbox\n");
}

#[tokio::test]
async fn a_read_only_path_can_be_read_but_not_changed() {
    let workspace = Workspace::new();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("data.txt"), "shared\n").unwrap();
    let mut policy = workspace.policy();
    policy.allow_read(shared.path());
    let dir = shared.path().to_str().unwrap();

    let read = run(SHELL, &["-c", r#"cat "$1/data.txt""#, "sh", dir], &policy).await;
    assert_success(&read);
    assert_eq!(stdout(&read), "shared\n");

    for change in [
        r#"echo changed > "$1/data.txt""#,
        r#"echo new > "$1/new.txt""#,
        r#"rm "$1/data.txt""#,
        r#"mkdir "$1/sub""#,
    ] {
        let output = run(SHELL, &["-c", change, "sh", dir], &policy).await;
        assert!(!output.status.success(), "{change} succeeded");
    }
    assert_eq!(
        std::fs::read_to_string(shared.path().join("data.txt")).unwrap(),
        "shared\n"
    );
    assert_eq!(std::fs::read_dir(shared.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn system_secrets_and_system_directories_stay_closed() {
    let workspace = Workspace::new();
    let policy = workspace.policy();

    // /etc is open entry by entry: the name service files are readable, the password
    // hashes are not (even for root: the process holds no capability to override).
    let passwd = run(SHELL, &["-c", "head -c 5 /etc/passwd"], &policy).await;
    assert_success(&passwd);
    let shadow = run(SHELL, &["-c", "cat /etc/shadow"], &policy).await;
    assert!(!shadow.status.success());
    assert_eq!(stdout(&shadow), "");

    // System directories are read-only even to root.
    let write = run(
        SHELL,
        &["-c", "echo x > /usr/portcullis-sandbox-test"],
        &policy,
    )
    .await;
    assert!(!write.status.success());
    assert!(!std::path::Path::new("/usr/portcullis-sandbox-test").exists());
}
