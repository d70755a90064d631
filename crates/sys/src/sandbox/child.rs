//! What the new process does to itself between `fork` and `exec`. The parent may be
//! multi-threaded, so the child may hold a copy of a lock another thread held at the fork:
//! everything here is a plain system call on values prepared before the fork, with no
//! allocation, no lock and no formatting.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::probe::NetworkIsolation;
use super::seccomp::Filter;

/// The type `setrlimit` takes for a resource on this C library.
#[cfg(target_env = "gnu")]
pub(super) type Resource = libc::__rlimit_resource_t;
/// The type `setrlimit` takes for a resource on this C library.
#[cfg(not(target_env = "gnu"))]
pub(super) type Resource = libc::c_int;

/// One resource limit to set.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limit {
    pub(super) resource: Resource,
    pub(super) soft: libc::rlim_t,
    pub(super) hard: libc::rlim_t,
}

/// The contents of `/proc/self/uid_map` and `/proc/self/gid_map` for a user namespace that
/// maps the caller's own user and group to themselves.
#[derive(Clone, Debug)]
pub(super) struct IdMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    /// The maps for the calling process's effective user and group.
    pub(super) fn of_current_process() -> Self {
        // SAFETY: geteuid and getegid cannot fail and touch no memory of ours.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        IdMaps {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

/// Everything the new process applies to itself before `exec`, prepared in the parent.
#[derive(Debug)]
pub(super) struct ChildSetup {
    pub(super) network: Option<NetworkIsolation>,
    pub(super) id_maps: IdMaps,
    /// The Landlock ruleset to enforce (its descriptor closes on exec).
    pub(super) landlock: Option<OwnedFd>,
    /// The system-call filter to load.
    pub(super) seccomp: Option<Filter>,
    /// Whether to empty the bounding set, which needs CAP_SETPCAP: for root, whose
    /// capabilities `exec` would restore otherwise, and in a new user namespace, which starts
    /// with every capability.
    pub(super) empty_bounding_set: bool,
    pub(super) limits: Vec<Limit>,
}

impl ChildSetup {
    /// Applies the sandbox to the calling process. Called in the child after `fork`; makes
    /// only async-signal-safe system calls and allocates nothing (an `io::Error` from an
    /// error number holds no heap memory).
    pub(super) fn apply(&self) -> io::Result<()> {
        // A session (and process group) of its own: the whole tree can be signalled at once,
        // and the process has no controlling terminal.
        // SAFETY: setsid takes no arguments and touches no memory of ours.
        check(unsafe { libc::setsid() })?;
        if let Some(isolation) = self.network {
            enter_network_namespace(isolation, &self.id_maps)?;
        }
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        if let Some(ruleset) = &self.landlock {
            // SAFETY: landlock_restrict_self takes a descriptor we own (open until the
            // ruleset is dropped in the parent) and flags; it reads no memory of ours.
            let result =
                unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
            if result != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(filter) = &self.seccomp {
            filter.install()?;
        }
        drop_capabilities(self.empty_bounding_set)?;
        for limit in &self.limits {
            let value = libc::rlimit {
                rlim_cur: limit.soft,
                rlim_max: limit.hard,
            };
            // SAFETY: `value` is a valid rlimit that lives for the duration of the call.
            check(unsafe { libc::setrlimit(limit.resource, &value) })?;
        }
        Ok(())
    }
}

/// Moves the calling process into a new network namespace (after a new user namespace for
/// [`NetworkIsolation::UserNamespace`]). Async-signal-safe: also run in the probe's child.
pub(super) fn enter_network_namespace(
    isolation: NetworkIsolation,
    id_maps: &IdMaps,
) -> io::Result<()> {
    match isolation {
        NetworkIsolation::NetworkNamespace => {
            // SAFETY: unshare takes flags only.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })
        }
        NetworkIsolation::UserNamespace => {
            // SAFETY: unshare takes flags only.
            check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) })?;
            // Without CAP_SETGID in the parent namespace, setgroups must be denied before
            // the group map may be written.
            write_whole_file(c"/proc/self/setgroups", b"deny")?;
            write_whole_file(c"/proc/self/uid_map", &id_maps.uid_map)?;
            write_whole_file(c"/proc/self/gid_map", &id_maps.gid_map)
        }
    }
}

/// Empties the process's capability sets so that neither it nor what it executes holds any
/// privilege, and the bounding set too when `empty_bounding_set`.
fn drop_capabilities(empty_bounding_set: bool) -> io::Result<()> {
    if empty_bounding_set {
        for capability in 0..64 {
            // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) } != 0 {
                let error = io::Error::last_os_error();
                // Past the last capability this kernel knows.
                if error.raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(error);
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if cleared != 0 {
        let error = io::Error::last_os_error();
        // Kernels before 4.3 have no ambient set.
        if error.raw_os_error() != Some(libc::EINVAL) {
            return Err(error);
        }
    }
    let header = CapabilityHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapabilityData::default(); 2];
    // SAFETY: capset reads a version-3 header and the two data words that version expects,
    // both valid for the duration of the call.
    let result = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapabilityHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapabilityData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Writes `contents` to `path` in one `write`, as the kernel requires for the files of
/// `/proc/self` that configure a user namespace.
fn write_whole_file(path: &CStr, contents: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; these flags need no mode argument.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: `contents` is valid for reads of its length for the duration of the call.
    let written = unsafe { libc::write(fd, contents.as_ptr().cast(), contents.len()) };
    let write_error = io::Error::last_os_error();
    // SAFETY: `fd` was opened above and is closed exactly once.
    unsafe { libc::close(fd) };
    match usize::try_from(written) {
        Ok(length) if length == contents.len() => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
        Err(_) => Err(write_error),
    }
}

/// Turns the `-1` of a failed system call into the error it set.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
