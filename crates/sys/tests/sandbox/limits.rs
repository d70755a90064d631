//! Resource limits: a process beyond its memory, processor time or open files fails, and
//! the gateway is unaffected.

use std::os::unix::process::ExitStatusExt;

use super::{PYTHON, Workspace, assert_success, run, stderr, stdout};

/// Allocates and touches the number of MiB given as its argument.
const ALLOCATE: &str = r#"
import sys
block = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
print("allocated", sys.argv[1])
"#;

#[tokio::test]
async fn a_python_process_beyond_its_memory_limit_fails() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.limits.memory_bytes = Some(256 << 20);

    let within = run(PYTHON, &["-c", ALLOCATE, "64"], &policy).await;
    assert_success(&within);
    assert_eq!(stdout(&within), "allocated 64\n");

    let beyond = run(PYTHON, &["-c", ALLOCATE, "1024"], &policy).await;
    assert!(!beyond.status.success());
    assert!(
        stderr(&beyond).contains("MemoryError"),
        "{}",
        stderr(&beyond)
    );

    // The limit was the child's alone: the gateway's own is untouched.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let data = limits
        .lines()
        .find(|l| l.starts_with("Max data size"))
        .unwrap();
    assert!(data.contains("unlimited"), "{data}");
}

#[tokio::test]
async fn a_node_process_runs_under_the_memory_limit_and_fails_beyond_it() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.limits.memory_bytes = Some(256 << 20);
    // A WebAssembly memory reserves gigabytes of address space without using them.
    let allocate = "new WebAssembly.Memory({ initial: 1 }); \
                    const b = Buffer.alloc(Number(process.argv[1]) << 20, 1); \
                    console.log('allocated', b.length >> 20)";

    let within = run("/usr/bin/node", &["-e", allocate, "64"], &policy).await;
    assert_success(&within);
    assert_eq!(stdout(&within), "allocated 64\n");

    let beyond = run("/usr/bin/node", &["-e", allocate, "1024"], &policy).await;
    assert!(!beyond.status.success());
    assert!(
        stderr(&beyond).contains("RangeError"),
        "{}",
        stderr(&beyond)
    );
}

#[tokio::test]
async fn a_process_beyond_its_processor_time_is_stopped() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.limits.cpu_seconds = Some(1);

    let output = run(PYTHON, &["-c", "while True: pass"], &policy).await;

    let signal = output.status.signal();
    assert!(
        signal == Some(libc::SIGXCPU) || signal == Some(libc::SIGKILL),
        "{}",
        output.status
    );
}

#[tokio::test]
async fn a_process_beyond_its_open_files_fails() {
    let workspace = Workspace::new();
    let mut policy = workspace.policy();
    policy.limits.open_files = Some(16);
    let open = "import sys; files = [open('/dev/null') for _ in range(int(sys.argv[1]))]; \
                print('opened', len(files))";

    let within = run(PYTHON, &["-c", open, "8"], &policy).await;
    assert_success(&within);
    let beyond = run(PYTHON, &["-c", open, "32"], &policy).await;
    assert!(!beyond.status.success());
    assert!(
        stderr(&beyond).contains("Too many open files"),
        "{}",
        stderr(&beyond)
    );
}
