//! Node.js, the runtime of most MCP servers, runs under the default policy.

use super::{Workspace, assert_success, run, stderr, stdout};

#[tokio::test]
async fn node_reads_a_file_in_its_directory_under_the_default_policy() {
    let workspace = Workspace::new();
    std::fs::write(workspace.dir().join("tool.json"), r#"{"name":"echo"}"#).unwrap();
    let script = "const fs = require('fs'); const os = require('os'); \
        const tool = JSON.parse(fs.readFileSync('tool.json', 'utf8')); \
        fs.writeFileSync(os.tmpdir() + '/state', 'ok'); \
        console.log(tool.name, os.cpus().length > 0, fs.readFileSync(os.tmpdir() + '/state', 'utf8'))";

    let output = run("/usr/bin/node", &["-e", script], &workspace.policy()).await;

    assert_success(&output);
    assert_eq!(stdout(&output), "echo true ok\n");
    assert_eq!(stderr(&output), "");
}

#[tokio::test]
async fn node_cannot_read_outside_its_paths() {
    let workspace = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.txt");
    std::fs::write(&secret, "hidden").unwrap();
    let script = "try { require('fs').readFileSync(process.argv[1]); console.log('read') } \
        catch (e) { console.log(e.code) }";

    let output = run(
        "/usr/bin/node",
        &["-e", script, secret.to_str().unwrap()],
        &workspace.policy(),
    )
    .await;

    assert_success(&output);
    assert_eq!(stdout(&output), "EACCES\n");
}

#[tokio::test]
async fn npx_starts_under_the_default_policy() {
    let workspace = Workspace::new();

    let output = run("/usr/bin/npx", &["--version"], &workspace.policy()).await;

    assert_success(&output);
    let version = stdout(&output);
    assert!(
        version.trim().split('.').count() == 3,
        "{version:?} {}",
        stderr(&output)
    );
}
