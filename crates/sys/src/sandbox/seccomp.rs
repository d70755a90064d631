//! The sandbox's system-call filter (seccomp): no Unix socket made with `socket(2)`, so no
//! connecting to a socket file outside the sandbox (Landlock before ABI 9 does not cover
//! it: `/var/run/docker.sock` would be reachable), and no io_uring, whose operations would
//! bypass the filter. `socketpair(2)`, which child processes' pipes use, stays allowed.

use std::io;

/// The audit architecture of this build's system calls (`AUDIT_ARCH_X86_64`).
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
/// The audit architecture of this build's system calls (`AUDIT_ARCH_AARCH64`).
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;

/// Whether this build can filter system calls (the filter is written for the little-endian
/// 64-bit architectures above).
pub(super) const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// System-call numbers from this bit up are the x32 ABI on x86_64: refused as a whole.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: the call's number, its architecture, and the low half
/// of its first argument (little-endian).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_IF_AT_LEAST: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A jump `if_true` or `if_false` instructions past the next one.
fn jump(code: u16, k: u32, if_true: u8, if_false: u8) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: if_true,
        jf: if_false,
        k,
    }
}

/// The filter program, built in the parent; [`install`] loads it in the child.
#[derive(Clone)]
pub(super) struct Filter {
    program: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({} instructions)", self.program.len())
    }
}

impl Filter {
    /// Refuses `socket(AF_UNIX, …)` with EACCES and `io_uring_setup` with ENOSYS (callers
    /// fall back to ordinary system calls); a call through another ABI (32-bit or x32 code,
    /// which could reach `socketcall`) kills the process.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(super) fn no_unix_sockets() -> Self {
        let socket = libc::SYS_socket as u32;
        let io_uring_setup = libc::SYS_io_uring_setup as u32;
        let unix = libc::AF_UNIX as u32;
        let program = vec![
            /* 0 */ statement(LOAD_WORD, OFFSET_ARCH),
            /* 1 */ jump(JUMP_IF_EQUAL, NATIVE_ARCH, 1, 0), // → 3, else 2
            /* 2 */ statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS),
            /* 3 */ statement(LOAD_WORD, OFFSET_NR),
            /* 4 */ jump(JUMP_IF_AT_LEAST, X32_SYSCALL_BIT, 5, 0), // → 10, else 5
            /* 5 */ jump(JUMP_IF_EQUAL, io_uring_setup, 6, 0), // → 12, else 6
            /* 6 */ jump(JUMP_IF_EQUAL, socket, 0, 2), // → 7, else 9
            /* 7 */ statement(LOAD_WORD, OFFSET_ARG0_LOW),
            /* 8 */ jump(JUMP_IF_EQUAL, unix, 2, 0), // → 11, else 9
            /* 9 */ statement(RETURN, libc::SECCOMP_RET_ALLOW),
            /* 10 */ statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS),
            /* 11 */ statement(RETURN, errno(libc::EACCES)),
            /* 12 */ statement(RETURN, errno(libc::ENOSYS)),
        ];
        Filter { program }
    }

    /// Without a filter for this architecture: never built, since [`SUPPORTED`] is false
    /// and the probe reports seccomp as unavailable.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(super) fn no_unix_sockets() -> Self {
        Filter {
            program: Vec::new(),
        }
    }

    /// Loads the filter into the calling process (and everything it will execute). Needs
    /// `no_new_privs`. Async-signal-safe: one `prctl` on memory prepared before the fork.
    pub(super) fn install(&self) -> io::Result<()> {
        let length = u16::try_from(self.program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        if length == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let program = libc::sock_fprog {
            len: length,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `length` valid instructions that outlive the call; the
        // kernel copies them and does not write through the pointer.
        let result = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
                0,
                0,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn errno(code: libc::c_int) -> u32 {
    libc::SECCOMP_RET_ERRNO | (code as u32 & libc::SECCOMP_RET_DATA)
}

/// Whether the kernel filters system calls (`PR_GET_SECCOMP` answers) on a supported
/// architecture.
pub(super) fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer and returns the calling thread's mode.
    SUPPORTED && unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0
}
