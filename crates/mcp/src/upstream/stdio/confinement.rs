//! The sandbox of a stdio server (`sandbox: true`, the default): the policy its entry makes
//! for `portcullis_sys::sandbox`, and the kernel's protections, probed once per process and
//! logged when the first sandboxed server starts.
//!
//! The policy:
//!
//! - environment: the entry's `env` on top of the gateway's `PATH`, `LANG` and `LC_*`, with
//!   `HOME` and `TMPDIR` inside the connection's private directory (`home`, `tmp`);
//! - working directory: the entry's `cwd`, or the private directory;
//! - network: none at all when the entry says `network: false`; Unix sockets never (socket
//!   pairs still work);
//! - limits: the entry's `limits` (memory as `RLIMIT_DATA`, per process). A gateway running as
//!   root gets no process limit: the kernel does not apply `RLIMIT_NPROC` to root, and the
//!   limit is left out rather than the server refused;
//! - files: the system's read-only directories; read-write the working directory, the private
//!   directory and the entry's `write_paths`; read-only the entry's `read_paths`, every
//!   argument that is an existing absolute path, and the program's installation.
//!
//! The program's installation: the program is looked up (through the policy's `PATH` when
//! its name has no `/`), and for the path found and for its canonical path (symbolic links
//! resolved), the root is the directory holding the outermost `node_modules` when there is
//! one (the package tree); else, for a program in a `bin` or `sbin` directory whose parent
//! holds `lib` or `pyvenv.cfg`, that parent (an installation prefix, a virtual environment);
//! else the program file alone. A script's `#!` interpreter (through `env` too) gets the same
//! rule. `/` itself is never allowed whole.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use portcullis_sys::sandbox::{
    Protections, ResourceLimits, SandboxError, SandboxPolicy, probe, sandboxed_command,
};
use tokio::process::Command;

use crate::config::StdioSpec;

/// Longest `#!` line read to find a script's interpreter.
const MAX_SHEBANG: usize = 256;

/// The protections this system provides, probed when first needed and logged then.
pub(super) fn protections() -> Protections {
    static PROBED: OnceLock<Protections> = OnceLock::new();
    *PROBED.get_or_init(|| {
        let found = probe();
        tracing::info!("stdio MCP servers run in a {found}");
        if !found.process_limit {
            tracing::info!(
                "stdio MCP servers get no process limit: the gateway runs as root, to which the kernel does not apply RLIMIT_NPROC"
            );
        }
        found
    })
}

/// The command that starts `spec` in its sandbox, working in `workdir`, its home and
/// temporary directories in `private` (the connection's own directory). Fails when a
/// protection the policy needs is missing from `protections`, or a path it allows cannot be
/// opened.
pub(super) fn command(
    spec: &StdioSpec,
    workdir: &Path,
    private: &Path,
    protections: &Protections,
) -> Result<Command, SandboxError> {
    let policy = policy(spec, workdir, private, protections)?;
    sandboxed_command(&spec.command, &spec.args, &policy, protections)
}

/// The sandbox policy of `spec` (see the module doc).
fn policy(
    spec: &StdioSpec,
    workdir: &Path,
    private: &Path,
    protections: &Protections,
) -> Result<SandboxPolicy, SandboxError> {
    let home = private.join("home");
    let temp = private.join("tmp");
    for dir in [&home, &temp] {
        std::fs::create_dir_all(dir).map_err(|source| SandboxError::Path {
            path: dir.clone(),
            source,
        })?;
    }
    let mut policy = SandboxPolicy::new(workdir, &temp);
    for (name, value) in super::inherited_environment() {
        if name != "HOME" && name != "TMPDIR" {
            policy.set_env(name, value);
        }
    }
    policy.set_env("HOME", &home);
    for (name, value) in &spec.env {
        policy.set_env(name, value);
    }
    policy.network = spec.network;
    policy.limits = ResourceLimits {
        memory_bytes: spec.limits.memory_bytes,
        cpu_seconds: spec.limits.cpu_seconds,
        processes: spec.limits.processes.filter(|_| protections.process_limit),
        open_files: spec.limits.open_files,
    };
    policy.allow_read_write(private);
    for path in &spec.write_paths {
        policy.allow_read_write(path);
    }
    for path in &spec.read_paths {
        policy.allow_read(path);
    }
    for argument in spec.args.iter().map(Path::new) {
        if argument.is_absolute() && argument.exists() {
            policy.allow_read(argument);
        }
    }
    let search_path = policy
        .env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.clone());
    for root in installation(&spec.command, workdir, search_path.as_deref()) {
        policy.allow_read(root);
    }
    Ok(policy)
}

/// The roots of `program`'s installation, and of its `#!` interpreter's (see the module doc).
fn installation(program: &str, workdir: &Path, search_path: Option<&OsStr>) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let Some(found) = locate(program, workdir, search_path) else {
        return roots;
    };
    roots_of(&found, &mut roots);
    if let Some(interpreter) = interpreter(&found, workdir, search_path) {
        roots_of(&interpreter, &mut roots);
    }
    roots
}

/// The installation roots of the program at `found`, as found and with links resolved.
fn roots_of(found: &Path, roots: &mut Vec<PathBuf>) {
    let canonical = found.canonicalize().ok();
    for path in std::iter::once(found).chain(canonical.as_deref()) {
        let root = installation_root(path);
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
}

/// Where `program` is: a path with a `/` (relative ones in `workdir`, where it starts), or
/// the first executable file of that name in `search_path`.
fn locate(program: &str, workdir: &Path, search_path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        let path = workdir.join(program);
        return path.exists().then_some(path);
    }
    std::env::split_paths(search_path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| workdir.join(dir).join(program))
        .find(|candidate| executable_file(candidate))
}

fn executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The interpreter a script at `script` names on its `#!` line (`#!/usr/bin/env node`: the
/// `node` of `search_path`).
fn interpreter(script: &Path, workdir: &Path, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let mut head = Vec::with_capacity(MAX_SHEBANG);
    std::fs::File::open(script)
        .ok()?
        .take(MAX_SHEBANG as u64)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let named = Path::new(words.next()?);
    if named.file_name() == Some(OsStr::new("env")) {
        let program = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
        locate(program, workdir, search_path)
    } else {
        named.exists().then(|| named.to_path_buf())
    }
}

/// The root of the installation holding the program at `program` (see the module doc).
fn installation_root(program: &Path) -> PathBuf {
    let components: Vec<Component<'_>> = program.components().collect();
    if let Some(at) = components
        .iter()
        .position(|c| c.as_os_str() == "node_modules")
    {
        let tree: PathBuf = components[..at].iter().collect();
        if tree.parent().is_some() {
            return tree;
        }
    }
    let prefix = program
        .parent()
        .filter(|dir| matches!(dir.file_name(), Some(n) if n == "bin" || n == "sbin"))
        .and_then(Path::parent)
        .filter(|prefix| prefix.parent().is_some())
        .filter(|prefix| prefix.join("lib").is_dir() || prefix.join("pyvenv.cfg").is_file());
    match prefix {
        Some(prefix) => prefix.to_path_buf(),
        None => program.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use portcullis_sys::sandbox::FilesystemRule;

    use super::*;
    use crate::config::Limits;
    use crate::upstream::{StdioUpstream, UpstreamError};

    fn spec(command: &str, args: &[&str]) -> StdioSpec {
        StdioSpec {
            command: command.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::from([("SETTING".to_owned(), "from-the-entry".to_owned())]),
            cwd: None,
            network: false,
            sandbox: true,
            limits: Limits::default(),
            read_paths: vec![PathBuf::from("/srv/reference")],
            write_paths: vec![PathBuf::from("/srv/out")],
        }
    }

    fn all() -> Protections {
        Protections {
            landlock_abi: Some(4),
            network_isolation: Some(portcullis_sys::sandbox::NetworkIsolation::UserNamespace),
            seccomp: true,
            rlimits: true,
            process_limit: true,
        }
    }

    fn touch_executable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_policy_has_the_entrys_environment_directories_and_paths() {
        let work = tempfile::tempdir().unwrap();
        let private = tempfile::tempdir().unwrap();
        let script = work.path().join("server.mjs");
        std::fs::write(&script, "").unwrap();
        let script = script.to_string_lossy().into_owned();
        let spec = spec("sh", &["-c", &script, "/no/such/file"]);
        let policy = policy(&spec, work.path(), private.path(), &all()).unwrap();

        let env: BTreeMap<String, String> = policy
            .env
            .iter()
            .map(|(n, v)| (n.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        assert_eq!(env["SETTING"], "from-the-entry");
        assert_eq!(
            Path::new(&env["HOME"]),
            private.path().join("home").as_path()
        );
        assert_eq!(
            Path::new(&env["TMPDIR"]),
            private.path().join("tmp").as_path()
        );
        assert!(private.path().join("home").is_dir() && private.path().join("tmp").is_dir());
        assert!(env.keys().all(|n| {
            ["PATH", "HOME", "LANG", "TMPDIR", "SETTING"].contains(&n.as_str())
                || n.starts_with("LC_")
        }));
        assert_eq!(policy.working_dir, work.path());
        assert!(!policy.network && !policy.unix_sockets);
        assert_eq!(policy.limits.memory_bytes, Limits::default().memory_bytes);
        assert_eq!(policy.limits.processes, Limits::default().processes);

        let FilesystemRule::Restricted {
            read_only,
            read_write,
        } = &policy.filesystem
        else {
            panic!("the filesystem is restricted");
        };
        for path in [work.path(), private.path(), Path::new("/srv/out")] {
            assert!(read_write.iter().any(|p| p == path), "{}", path.display());
        }
        assert!(read_only.iter().any(|p| p == Path::new(&script)));
        assert!(read_only.iter().any(|p| p == Path::new("/srv/reference")));
        assert!(!read_only.iter().any(|p| p == Path::new("/no/such/file")));
        assert!(read_only.iter().any(|p| p == Path::new("/usr")));
        assert!(!read_only.iter().any(|p| p == Path::new("/")));
    }

    #[test]
    fn a_root_gateway_gets_no_process_limit_rather_than_a_refusal() {
        let work = tempfile::tempdir().unwrap();
        let without = Protections {
            process_limit: false,
            ..all()
        };
        let policy = policy(&spec("sh", &[]), work.path(), work.path(), &without).unwrap();
        assert_eq!(policy.limits.processes, None);
        assert_eq!(policy.limits.open_files, Limits::default().open_files);
    }

    #[test]
    fn installation_roots_are_package_trees_prefixes_or_the_file() {
        let base = tempfile::tempdir().unwrap();
        let base = base.path().canonicalize().unwrap();

        // node_modules/.bin/x, a link into the package: the tree holding node_modules.
        let package = base.join("app/node_modules/tool/dist/cli.js");
        touch_executable(&package);
        let bin = base.join("app/node_modules/.bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&package, bin.join("tool")).unwrap();
        assert_eq!(
            installation(&bin.join("tool").to_string_lossy(), &base, None),
            [base.join("app")]
        );

        // A virtual environment's python, linked to an interpreter installed elsewhere: both
        // prefixes.
        let interpreter = base.join("versions/3.11/bin/python3.11");
        touch_executable(&interpreter);
        std::fs::create_dir_all(base.join("versions/3.11/lib")).unwrap();
        std::fs::create_dir_all(base.join("venv/bin")).unwrap();
        std::fs::write(base.join("venv/pyvenv.cfg"), "").unwrap();
        std::os::unix::fs::symlink(&interpreter, base.join("venv/bin/python")).unwrap();
        assert_eq!(
            installation("python", &base, Some(base.join("venv/bin").as_os_str())),
            [base.join("venv"), base.join("versions/3.11")]
        );

        // A program in a bin directory that is not a prefix, and one on its own: the file.
        let loose = base.join("home/bin/tool");
        touch_executable(&loose);
        assert_eq!(installation("bin/tool", &base.join("home"), None), [loose]);

        // A script naming its interpreter through env: the interpreter's installation too.
        let script = base.join("scripts/serve");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, "#!/usr/bin/env -S python3.11 -u\n").unwrap();
        let roots = installation(
            &script.to_string_lossy(),
            &base,
            Some(base.join("versions/3.11/bin").as_os_str()),
        );
        assert_eq!(roots, [script.clone(), base.join("versions/3.11")]);

        // Never the whole filesystem, and nothing for a program that is not there.
        assert_eq!(
            installation_root(Path::new("/node_modules/x")),
            Path::new("/node_modules/x")
        );
        assert_eq!(
            installation_root(Path::new("/bin/sh")),
            Path::new("/bin/sh")
        );
        assert!(installation("no-such-program", &base, Some(OsStr::new("/nowhere"))).is_empty());
    }

    /// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
    fn ended(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
    }

    async fn wait_ended(pid: u32) {
        let started = std::time::Instant::now();
        while !ended(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "process {pid} still runs"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the `sleep` the scripted server started, as it reported it.
    fn sleeper(upstream: &StdioUpstream) -> u32 {
        use crate::upstream::Upstream;
        let info = upstream.info().unwrap();
        let result: serde_json::Value = serde_json::from_str(info.initialize_result.get()).unwrap();
        result["serverInfo"]["name"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_and_shutdown_end_the_whole_process_tree() {
        use crate::upstream::{Status, Upstream};
        const SCRIPT: &str = r#"
            const sleeper = require("child_process").spawn("sleep", ["300"], { stdio: "ignore" });
            require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
                const m = JSON.parse(line);
                if (m.method !== "initialize") return;
                const result = { protocolVersion: m.params.protocolVersion, capabilities: {},
                                 serverInfo: { name: String(sleeper.pid), version: "1" } };
                process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id: m.id, result }) + "\n");
            });
        "#;
        let mut spec = spec("node", &["-e", SCRIPT]);
        spec.read_paths.clear();
        spec.write_paths.clear();
        let upstream = StdioUpstream::start_with(
            "tree".to_owned(),
            spec,
            Duration::from_secs(10),
            Some(protections()),
        )
        .unwrap();
        assert!(
            upstream
                .wait_for(Status::Ready, Duration::from_secs(20))
                .await
        );
        let (leader, first_sleeper) = (upstream.pid().unwrap(), sleeper(&upstream));
        assert!(!ended(first_sleeper));

        // The leader alone is killed: the restart takes its child down too.
        let leader_pid = rustix::process::Pid::from_raw(i32::try_from(leader).unwrap()).unwrap();
        rustix::process::kill_process(leader_pid, rustix::process::Signal::KILL).unwrap();
        wait_ended(first_sleeper).await;
        let started = std::time::Instant::now();
        while upstream.pid().is_none_or(|pid| pid == leader) || upstream.status() != Status::Ready {
            assert!(started.elapsed() < Duration::from_secs(20), "not restarted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second_sleeper = sleeper(&upstream);
        assert_ne!(second_sleeper, first_sleeper);

        // Shutdown ends the new tree.
        let second_leader = upstream.pid().unwrap();
        upstream.shutdown().await;
        wait_ended(second_leader).await;
        wait_ended(second_sleeper).await;
    }

    #[tokio::test]
    async fn a_missing_protection_keeps_the_server_from_starting() {
        let cases = [
            (
                Protections {
                    network_isolation: None,
                    ..all()
                },
                false,
                "network isolation",
            ),
            (Protections::NONE, true, "filesystem restriction (Landlock)"),
        ];
        for (protections, network, named) in cases {
            let mut spec = spec("sh", &[]);
            spec.read_paths.clear();
            spec.write_paths.clear();
            spec.network = network;
            let started = StdioUpstream::start_with(
                "refused".to_owned(),
                spec,
                Duration::from_secs(5),
                Some(protections),
            );
            let Err(UpstreamError::Unavailable { reason, .. }) = started else {
                panic!("started without {named}: {started:?}");
            };
            assert!(reason.contains(named), "{reason}");
        }
    }
}
