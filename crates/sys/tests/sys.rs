//! The allocator gives a burst's memory back, and no other crate may hold `unsafe` code.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: portcullis_sys::allocator::Allocator = portcullis_sys::allocator::Allocator;

fn resident_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Many mid-sized blocks from several threads, like the buffers of a burst of large requests,
/// all touched so that they are resident.
fn burst(threads: usize, blocks: usize, size: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held = Vec::with_capacity(blocks);
                for i in 0..blocks {
                    let mut b = vec![0u8; size];
                    for chunk in b.chunks_mut(4096) {
                        chunk[0] = (i + t) as u8;
                    }
                    held.push(b);
                }
                held.iter().map(|b| b[0] as u64).sum::<u64>()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_burst_of_allocations_is_given_back_to_the_operating_system() {
    portcullis_sys::allocator::return_memory_promptly();
    assert_eq!(portcullis_sys::allocator::prompt_return_options(), [0]);

    let idle = resident_mib();
    // 4 threads × 1024 blocks × 96 KiB = 384 MiB at the peak.
    burst(4, 1024, 96 * 1024);
    // Go idle as a runtime worker does: collect when parking.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = resident_mib();
    while now > idle + 64 && Instant::now() < deadline {
        portcullis_sys::allocator::collect_if_due();
        std::thread::sleep(Duration::from_millis(50));
        now = resident_mib();
    }
    assert!(
        now <= idle + 64,
        "resident memory stayed at {now} MiB after the burst (idle {idle} MiB)"
    );
}

#[test]
fn only_this_crate_may_contain_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains("unsafe_code = \"forbid\""),
        "the workspace forbids unsafe code"
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if dir.file_name().unwrap() == "sys" || !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} must take the workspace lints (unsafe_code = forbid)",
            manifest.display()
        );
        checked += 1;
    }
    assert!(checked >= 10, "checked {checked} crates");
}

mod sandbox;
