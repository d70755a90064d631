//! The sandbox for processes the gateway starts (MCP servers speaking JSON-RPC over stdin and
//! stdout: `npx …`, Python scripts), built from kernel features alone — no container runtime.
//!
//! - [`probe`] finds which protections this kernel and the gateway's privileges provide
//!   ([`Protections`], one line for the log through `Display`).
//! - [`SandboxPolicy`] says what the process gets: its whole environment, its working
//!   directory, network or not, the files it may open ([`FilesystemRule`]), its limits
//!   ([`ResourceLimits`]). [`SandboxPolicy::new`] gives the defaults.
//! - [`sandboxed_command`] turns both into a [`tokio::process::Command`]; the caller adds the
//!   standard streams and spawns it. When the policy asks for a protection that
//!   [`Protections`] lacks, it fails with [`SandboxError::Unavailable`]: a process never runs
//!   less protected than its policy says.
//! - [`ProcessGroup`] and [`kill_process_group`] end the whole tree a process started.
//!
//! # What the spawned process gets
//!
//! In order, in the child between `fork` and `exec` (the Landlock ruleset is built and every
//! path opened before the fork; the child only makes system calls):
//!
//! 1. the policy's environment and nothing else, and the policy's working directory;
//! 2. a session and process group of its own (`setsid`), so the tree can be killed at once;
//! 3. without network: a network namespace of its own (directly as root; inside a new user
//!    namespace mapping the gateway's user and group to themselves otherwise). Its only
//!    device is a loopback that is down, so no address is reachable — the host's
//!    `127.0.0.1` included — and abstract Unix sockets of the host are out of reach;
//! 4. `no_new_privs`: set-user-ID programs and file capabilities grant nothing;
//! 5. Landlock, when the kernel has it: the filesystem rule; without network and on ABI 4 or
//!    later, no TCP bind or connect either; on ABI 6 or later, signals and abstract Unix
//!    sockets only within the sandbox. Landlock also restricts ptrace from inside the sandbox
//!    to processes outside it;
//! 6. without Unix sockets (the default): a seccomp filter refusing `socket(AF_UNIX, …)`,
//!    so no socket file outside the sandbox can be reached (Landlock covers that only from
//!    ABI 9), and io_uring; `socketpair` stays allowed. A call through another ABI (32-bit,
//!    x32) kills the process;
//! 7. no capabilities: all sets emptied, and the bounding set too for root and in a new user
//!    namespace, so that nothing the process executes gains any (root keeps root's file
//!    ownership). This is also what keeps a root gateway's `/proc/<pid>/environ`, memory
//!    and descriptors closed to the sandbox: reading them needs the gateway's capabilities;
//! 8. resource limits, each lowered only (never above the gateway's own hard limit), and no
//!    core dumps;
//! 9. `kill_on_drop`: dropping the child handle kills the process.
//!
//! # Memory
//!
//! The memory limit is `RLIMIT_DATA`: private writable memory (heap, anonymous mappings) of
//! each process. `RLIMIT_AS` would count the address space Node.js reserves without using it
//! (V8's heap cage, WebAssembly guard regions): measured with Node 20, it does not start
//! under 512 MiB of address space and cannot create a WebAssembly memory even under 4 GiB,
//! while under an `RLIMIT_DATA` of 256 MiB it starts and runs WebAssembly. Allocations beyond
//! the limit fail: Python raises `MemoryError`, Node throws `RangeError` for buffers and dies of
//! a fatal out-of-memory error when its heap cannot grow. It bounds each process, not the
//! tree, and does not count shared memory, page cache or kernel memory. A cgroup's
//! `memory.max` would bound the whole tree, but needs a delegated cgroup v2 hierarchy with
//! the memory controller, which gateways running in a container or under a v1 hierarchy do
//! not have; it is not used.

mod child;
mod policy;
mod probe;
mod rules;
mod seccomp;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::PathBuf;

use tokio::process::Command;

use self::child::{ChildSetup, IdMaps, Limit};
pub use self::policy::{FilesystemRule, ResourceLimits, SandboxPolicy};
pub use self::probe::{NetworkIsolation, Protections, probe};

/// A protection of the sandbox, as named by [`SandboxError::Unavailable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Restricting files (Landlock).
    Filesystem,
    /// Cutting the process off the network (a network namespace).
    Network,
    /// Keeping Unix sockets out (a seccomp filter).
    UnixSocketFilter,
    /// Resource limits (`setrlimit`).
    ResourceLimits,
    /// A limit on processes (`RLIMIT_NPROC`, which the kernel does not apply to root).
    ProcessLimit,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protection::Filesystem => "filesystem restriction (Landlock)",
            Protection::Network => "network isolation (network namespace)",
            Protection::UnixSocketFilter => "a Unix socket filter (seccomp)",
            Protection::ResourceLimits => "resource limits",
            Protection::ProcessLimit => "process limit (RLIMIT_NPROC does not apply to root)",
        })
    }
}

/// Why a sandboxed command could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy asks for a protection this system does not provide.
    #[error("the sandbox policy needs {protection}, which this system does not provide")]
    Unavailable {
        /// The missing protection.
        protection: Protection,
    },
    /// A path the policy allows cannot be opened.
    #[error("the sandbox cannot allow access to {}: {source}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// Why it cannot be opened.
        source: io::Error,
    },
    /// The kernel refused the Landlock ruleset.
    #[error("the sandbox's Landlock ruleset cannot be built: {0}")]
    Landlock(#[from] landlock::RulesetError),
}

/// A command that runs `program` with `args` under `policy`, using only the `protections`
/// given (normally [`probe`]'s). The caller sets the standard streams and spawns it; the
/// spawned process leads a process group of its own (see [`ProcessGroup`]).
///
/// A program without a `/` is looked up in the `PATH` of the policy's environment.
pub fn sandboxed_command<I, S>(
    program: impl AsRef<OsStr>,
    args: I,
    policy: &SandboxPolicy,
    protections: &Protections,
) -> Result<Command, SandboxError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let setup = prepare(policy, protections)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(policy.env.iter().map(|(name, value)| (name, value)))
        .current_dir(&policy.working_dir)
        .kill_on_drop(true);
    // SAFETY: `ChildSetup::apply` runs between fork and exec; it makes only async-signal-safe
    // system calls on values prepared here, takes no lock and allocates nothing.
    unsafe { command.pre_exec(move || setup.apply()) };
    Ok(command)
}

/// Checks that every protection `policy` needs is available and prepares what the child will
/// apply.
fn prepare(policy: &SandboxPolicy, protections: &Protections) -> Result<ChildSetup, SandboxError> {
    let restricts_files = matches!(policy.filesystem, FilesystemRule::Restricted { .. });
    if restricts_files && protections.landlock_abi.is_none() {
        return Err(SandboxError::Unavailable {
            protection: Protection::Filesystem,
        });
    }
    let network = match (policy.network, protections.network_isolation) {
        (true, _) => None,
        (false, Some(isolation)) => Some(isolation),
        (false, None) => {
            return Err(SandboxError::Unavailable {
                protection: Protection::Network,
            });
        }
    };
    let seccomp = match (policy.unix_sockets, protections.seccomp) {
        (true, _) => None,
        (false, true) => Some(seccomp::Filter::no_unix_sockets()),
        (false, false) => {
            return Err(SandboxError::Unavailable {
                protection: Protection::UnixSocketFilter,
            });
        }
    };
    let limits = resource_limits(&policy.limits, protections)?;
    let landlock = match protections.landlock_abi {
        Some(abi) => rules::build(abi, &policy.filesystem, !policy.network)?,
        None => None,
    };
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    let root = unsafe { libc::geteuid() } == 0;
    Ok(ChildSetup {
        network,
        id_maps: IdMaps::of_current_process(),
        landlock,
        seccomp,
        empty_bounding_set: root || network == Some(NetworkIsolation::UserNamespace),
        limits,
    })
}

/// The `setrlimit` calls for `limits`: each at most the gateway's own hard limit (a process
/// without privileges cannot raise it, and a lower one is what was asked), and no core dumps.
fn resource_limits(
    limits: &ResourceLimits,
    protections: &Protections,
) -> Result<Vec<Limit>, SandboxError> {
    let asked = [
        limits.memory_bytes,
        limits.cpu_seconds,
        limits.processes,
        limits.open_files,
    ];
    if !protections.rlimits {
        if asked.iter().any(Option::is_some) {
            return Err(SandboxError::Unavailable {
                protection: Protection::ResourceLimits,
            });
        }
        return Ok(Vec::new());
    }
    if limits.processes.is_some() && !protections.process_limit {
        return Err(SandboxError::Unavailable {
            protection: Protection::ProcessLimit,
        });
    }
    let mut calls = vec![lowered(libc::RLIMIT_CORE, 0, 0)];
    if let Some(bytes) = limits.memory_bytes {
        calls.push(lowered(libc::RLIMIT_DATA, bytes, bytes));
    }
    if let Some(seconds) = limits.cpu_seconds {
        // SIGXCPU at the soft limit, SIGKILL at the hard one for a process ignoring it.
        calls.push(lowered(
            libc::RLIMIT_CPU,
            seconds,
            seconds.saturating_add(1),
        ));
    }
    if let Some(processes) = limits.processes {
        calls.push(lowered(libc::RLIMIT_NPROC, processes, processes));
    }
    if let Some(files) = limits.open_files {
        calls.push(lowered(libc::RLIMIT_NOFILE, files, files));
    }
    Ok(calls)
}

/// A limit of `soft` and `hard` on `resource`, neither above the calling process's hard limit.
fn lowered(resource: child::Resource, soft: u64, hard: u64) -> Limit {
    let mut current = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `current` is a valid place for the limit; on failure it keeps "infinity".
    unsafe { libc::getrlimit(resource, &mut current) };
    let ceiling = current.rlim_max;
    Limit {
        resource,
        soft: soft.min(hard).min(ceiling),
        hard: hard.min(ceiling),
    }
}

/// Sends SIGKILL to every process of the process group `group` (a sandboxed process's id:
/// it leads its own group). A group that no longer exists is not an error.
///
/// A process that left the group (with `setsid` or `setpgid` of its own) is not reached.
/// Call it while the group's leader has not been reaped (before `wait` returns), or while
/// other members may remain: once the group is empty its number may be reused.
pub fn kill_process_group(group: u32) -> io::Result<()> {
    let group =
        libc::pid_t::try_from(group).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if group <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: killpg takes integers only; `group` is a single positive group id.
    if unsafe { libc::killpg(group, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error)
}

/// The process group of a sandboxed process, killed (SIGKILL to every member) when this is
/// dropped or on [`ProcessGroup::kill`]. Drop it before or just after reaping the leader:
/// see [`kill_process_group`].
#[derive(Debug)]
pub struct ProcessGroup {
    id: u32,
}

impl ProcessGroup {
    /// The group a spawned sandboxed process leads; `None` once it has been reaped.
    pub fn of(child: &tokio::process::Child) -> Option<ProcessGroup> {
        child.id().map(|id| ProcessGroup { id })
    }

    /// The group's id (the leader's process id).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Kills every process of the group now.
    pub fn kill(&self) -> io::Result<()> {
        kill_process_group(self.id)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Nothing to report to: a group already gone is the expected case.
        let _ = kill_process_group(self.id);
    }
}
