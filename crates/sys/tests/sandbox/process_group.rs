//! The process tree: a sandboxed process leads a group of its own, and killing the group
//! ends its children too.

use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_sys::sandbox::{ProcessGroup, sandboxed_command};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{SHELL, Workspace, protections};

/// Whether `pid` is a live process (neither gone nor a zombie awaiting its reaper).
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn dropping_the_process_group_kills_the_grandchildren() {
    let workspace = Workspace::new();
    let mut command = sandboxed_command(
        SHELL,
        ["-c", "sleep 300 & echo $!; wait"],
        &workspace.policy(),
        &protections(),
    )
    .unwrap();
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let group = ProcessGroup::of(&child).unwrap();
    assert_eq!(group.id(), child.id().unwrap());

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let grandchild: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    assert!(is_alive(grandchild), "the grandchild runs");
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap();
    let process_group: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(process_group, group.id(), "the grandchild is in the group");

    drop(group);

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(grandchild) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!is_alive(grandchild), "the grandchild outlived its group");
}

#[tokio::test]
async fn the_sandboxed_process_leads_a_new_session() {
    let workspace = Workspace::new();
    let mut command = sandboxed_command(
        SHELL,
        ["-c", "cut -d' ' -f6 /proc/self/stat"],
        &workspace.policy(),
        &protections(),
    )
    .unwrap();
    command.stdout(Stdio::piped());
    let child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let output = child.wait_with_output().await.unwrap();
    // /proc/self/stat is cut's own: its session is the shell's, which is the shell's pid.
    let session: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(session, pid);
    let own_session = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own_session = own_session
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap();
    assert_ne!(own_session, pid.to_string());
}
