//! What a sandboxed process may do: its environment, working directory, network, files and
//! resource limits, with defaults that let common interpreters (Node.js, Python, a shell) run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Everything a sandboxed process gets and may do. Build one with [`SandboxPolicy::new`] and
/// adjust its fields; [`super::sandboxed_command`] turns it into a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// The whole environment of the process: nothing of the caller's environment is passed
    /// unless it is listed here.
    pub env: Vec<(OsString, OsString)>,
    /// The directory the process starts in.
    pub working_dir: PathBuf,
    /// Whether the process may use the network. Without it, the process runs in a network
    /// namespace of its own, holding only a loopback device that is down: no address, the
    /// host's loopback included, is reachable.
    pub network: bool,
    /// Which files the process may open.
    pub filesystem: FilesystemRule,
    /// Whether the process may make Unix sockets with `socket(2)`, and so connect to a socket
    /// file (`/var/run/docker.sock`, a database's socket) or listen on one. Without it,
    /// `socket(AF_UNIX, …)` fails with EACCES (a seccomp filter); `socketpair(2)`, which
    /// pipes to child processes use, still works.
    pub unix_sockets: bool,
    /// Limits on the resources of each process of the sandbox.
    pub limits: ResourceLimits,
}

/// Which files a sandboxed process may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesystemRule {
    /// Every file the process's user may open.
    Unrestricted,
    /// Only files beneath the listed paths (a path may also name a single file). Anything
    /// else can neither be read, written, listed, executed nor created.
    Restricted {
        /// Paths whose files may be read, listed and executed.
        read_only: Vec<PathBuf>,
        /// Paths whose files may also be written, created, renamed, truncated and removed.
        read_write: Vec<PathBuf>,
    },
}

/// Limits on the resources of each process of a sandbox (`None`: no limit). Each process
/// started inside the sandbox inherits the same limits; they are not shared by the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Private writable memory (heap and anonymous mappings) of one process, in bytes
    /// (`RLIMIT_DATA`). Allocations beyond it fail: Python raises `MemoryError`, Node.js
    /// throws `RangeError` or stops with a fatal out-of-memory error. Unlike `RLIMIT_AS`, it
    /// does not count address space reserved without being writable, which Node.js reserves
    /// in large amounts.
    pub memory_bytes: Option<u64>,
    /// Processor time of one process, in seconds (`RLIMIT_CPU`): `SIGXCPU` at the limit,
    /// `SIGKILL` one second later.
    pub cpu_seconds: Option<u64>,
    /// Processes and threads of the user the gateway runs as, counted together with the
    /// gateway's own (`RLIMIT_NPROC`). The kernel does not apply it to root.
    pub processes: Option<u64>,
    /// Open file descriptors of one process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// System directories and files a dynamically linked program and the usual interpreters read:
/// libraries, certificates and OpenSSL's configuration (Node.js stops without
/// `/etc/ssl/openssl.cnf`), name resolution, time zones, `/proc` and a few devices. Only the
/// ones that exist are used. `/etc` is listed entry by entry so that `/etc/shadow` and other
/// credentials stay out.
const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/nix/store",
    "/run/current-system",
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/crypto-policies",
    "/etc/gai.conf",
    "/etc/group",
    "/etc/host.conf",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ld.so.preload",
    "/etc/locale.alias",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/passwd",
    "/etc/pki",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl",
    "/etc/timezone",
    "/etc/xdg",
    // Node.js does not start without it (process.memoryUsage reads /proc/self/statm at
    // start-up; os.cpus reads /proc/cpuinfo). A root gateway's environment, memory and
    // descriptors stay closed (the sandbox holds none of its capabilities); every process's
    // command line and the system's statistics remain readable.
    "/proc",
    "/dev/random",
    "/dev/urandom",
    "/dev/zero",
];

/// Devices a process may write to, besides its working and temporary directories.
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null", "/dev/full"];

/// The `PATH` of the default environment.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl SandboxPolicy {
    /// A policy for a process working in `working_dir`, with `temp_dir` as its private
    /// temporary directory (the caller creates both and removes them afterwards):
    ///
    /// - environment: `PATH` (the system directories), `HOME` (the working directory),
    ///   `TMPDIR` (the temporary directory), `LANG=C.UTF-8`; nothing else;
    /// - no network, no Unix sockets but socket pairs;
    /// - files: read-write in the two directories, `/dev/null` and `/dev/full`;
    ///   read-only in the system directories ([`SandboxPolicy::system_read_only`]); nothing
    ///   else;
    /// - limits: 1 GiB of memory and 1024 open files per process.
    pub fn new(working_dir: impl Into<PathBuf>, temp_dir: impl Into<PathBuf>) -> Self {
        let working_dir = working_dir.into();
        let temp_dir = temp_dir.into();
        let env = vec![
            (OsString::from("PATH"), OsString::from(DEFAULT_PATH)),
            (OsString::from("HOME"), working_dir.clone().into_os_string()),
            (OsString::from("TMPDIR"), temp_dir.clone().into_os_string()),
            (OsString::from("LANG"), OsString::from("C.UTF-8")),
        ];
        let mut read_write = vec![working_dir.clone(), temp_dir];
        read_write.extend(existing(SYSTEM_READ_WRITE));
        SandboxPolicy {
            env,
            working_dir,
            network: false,
            unix_sockets: false,
            filesystem: FilesystemRule::Restricted {
                read_only: Self::system_read_only(),
                read_write,
            },
            limits: ResourceLimits {
                memory_bytes: Some(1 << 30),
                cpu_seconds: None,
                processes: None,
                open_files: Some(1024),
            },
        }
    }

    /// The system paths of this machine that the default policy lets a process read.
    pub fn system_read_only() -> Vec<PathBuf> {
        existing(SYSTEM_READ_ONLY).collect()
    }

    /// Lets the process read (and execute) what lies beneath `path`, such as an interpreter
    /// installed outside the system directories. No effect on an unrestricted filesystem.
    pub fn allow_read(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        if let FilesystemRule::Restricted { read_only, .. } = &mut self.filesystem {
            read_only.push(path.into());
        }
        self
    }

    /// Lets the process read and write what lies beneath `path`. No effect on an
    /// unrestricted filesystem.
    pub fn allow_read_write(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        if let FilesystemRule::Restricted { read_write, .. } = &mut self.filesystem {
            read_write.push(path.into());
        }
        self
    }

    /// Sets (or replaces) one variable of the process's environment.
    pub fn set_env(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.env.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, existing)) => *existing = value,
            None => self.env.push((name, value)),
        }
        self
    }
}

fn existing(paths: &'static [&'static str]) -> impl Iterator<Item = PathBuf> {
    paths
        .iter()
        .map(Path::new)
        .filter(|path| path.exists())
        .map(Path::to_path_buf)
}
