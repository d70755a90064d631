//! Which of the sandbox's protections this kernel, and the privileges the gateway runs with,
//! provide right now.

use std::fmt;

use super::child::{IdMaps, enter_network_namespace};
use super::seccomp;

/// The protections available to [`super::sandboxed_command`], as found by [`probe`]. A policy
/// asking for one that is missing gets [`super::SandboxError::Unavailable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// The Landlock ABI version of the kernel (`None`: Landlock is not built in or not
    /// enabled). Version 1 restricts files, 4 adds TCP ports, 6 adds signal and
    /// abstract-socket scopes.
    pub landlock_abi: Option<u32>,
    /// How a process can be cut off the network (`None`: it cannot).
    pub network_isolation: Option<NetworkIsolation>,
    /// Whether system calls can be filtered (seccomp), which keeps Unix sockets out.
    pub seccomp: bool,
    /// Whether resource limits (`setrlimit`) can be set: always true on Linux.
    pub rlimits: bool,
    /// Whether a limit on processes takes effect: the kernel ignores `RLIMIT_NPROC` for root.
    pub process_limit: bool,
}

/// How a sandboxed process is moved into a network namespace of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkIsolation {
    /// A new network namespace directly: needs CAP_SYS_ADMIN (root).
    NetworkNamespace,
    /// A new user namespace first, mapping the gateway's user and group to themselves, and a
    /// network namespace owned by it: works without privileges where the kernel allows
    /// unprivileged user namespaces.
    UserNamespace,
}

/// `LANDLOCK_CREATE_RULESET_VERSION`: asks `landlock_create_ruleset` for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Finds the protections available now. Network isolation is tried for real in a short-lived
/// child process (a fork that makes a few system calls and exits), so a kernel setting or a
/// seccomp filter that forbids namespaces is seen. Takes about a millisecond.
pub fn probe() -> Protections {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    let root = unsafe { libc::geteuid() } == 0;
    let network_isolation = if root && isolation_works(NetworkIsolation::NetworkNamespace) {
        Some(NetworkIsolation::NetworkNamespace)
    } else if isolation_works(NetworkIsolation::UserNamespace) {
        Some(NetworkIsolation::UserNamespace)
    } else {
        None
    };
    Protections {
        landlock_abi: landlock_abi(),
        network_isolation,
        seccomp: seccomp::available(),
        rlimits: true,
        process_limit: !root,
    }
}

/// The kernel's Landlock ABI version, if Landlock is enabled.
fn landlock_abi() -> Option<u32> {
    // SAFETY: with a null attribute pointer, a zero size and the version flag, the call
    // only returns the ABI version (or an error); it reads and writes no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|version| *version > 0)
}

/// Whether a child process can enter a network namespace the way `isolation` does.
fn isolation_works(isolation: NetworkIsolation) -> bool {
    let id_maps = IdMaps::of_current_process();
    // SAFETY: the child makes only async-signal-safe system calls (unshare, open, write,
    // close) on memory prepared before the fork, then leaves with _exit; the parent only
    // waits for it.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => false,
        0 => {
            let code = match enter_network_namespace(isolation, &id_maps) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        child => exited_successfully(child),
    }
}

/// Waits for `child` and tells whether it exited with status 0.
fn exited_successfully(child: libc::pid_t) -> bool {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid place for the exit status; `child` is our own child.
        let result = unsafe { libc::waitpid(child, &mut status, 0) };
        if result == child {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

impl Protections {
    /// No protection at all, as on a system without any of them.
    pub const NONE: Protections = Protections {
        landlock_abi: None,
        network_isolation: None,
        seccomp: false,
        rlimits: false,
        process_limit: false,
    };
}

impl fmt::Display for Protections {
    /// One line for the log, e.g. `sandbox: landlock ABI 7 (files, TCP ports, signal and
    /// abstract-socket scopes), network namespace, seccomp, rlimits (no process limit for
    /// root)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sandbox: ")?;
        match self.landlock_abi {
            Some(abi) => {
                write!(f, "landlock ABI {abi} (files")?;
                if abi >= 4 {
                    f.write_str(", TCP ports")?;
                }
                if abi >= 6 {
                    f.write_str(", signal and abstract-socket scopes")?;
                }
                f.write_str(")")?;
            }
            None => f.write_str("no landlock")?,
        }
        match self.network_isolation {
            Some(NetworkIsolation::NetworkNamespace) => f.write_str(", network namespace")?,
            Some(NetworkIsolation::UserNamespace) => {
                f.write_str(", user and network namespaces")?
            }
            None => f.write_str(", no network namespace")?,
        }
        f.write_str(if self.seccomp {
            ", seccomp"
        } else {
            ", no seccomp"
        })?;
        match (self.rlimits, self.process_limit) {
            (true, true) => f.write_str(", rlimits"),
            (true, false) => f.write_str(", rlimits (no process limit for root)"),
            (false, _) => f.write_str(", no rlimits"),
        }
    }
}
