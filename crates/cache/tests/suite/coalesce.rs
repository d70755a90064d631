//! Request coalescing: one leader per key, followers get its entry or are released promptly,
//! and nothing stays in the map afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_cache::{CacheKey, Coalescer, Joined, fingerprint_custom};
use tokio::sync::Barrier;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(3600);

fn key(name: &str) -> CacheKey {
    fingerprint_custom("coalesce-tests", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_joins_make_one_leader_and_all_followers_get_its_entry() {
    const CALLERS: usize = 50;
    let coalescer = Coalescer::new();
    // Nobody finishes until everybody has joined, so all fifty overlap.
    let joined = Arc::new(Barrier::new(CALLERS));
    let entry = Bytes::from_static(b"the one upstream answer");
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let coalescer = coalescer.clone();
        let joined = Arc::clone(&joined);
        let entry = entry.clone();
        tasks.push(tokio::spawn(async move {
            match coalescer.join(key("same")) {
                Joined::Leader(guard) => {
                    joined.wait().await;
                    guard.complete(entry.clone());
                    (true, Some(entry))
                }
                Joined::Follower(follower) => {
                    joined.wait().await;
                    (false, follower.wait(LONG).await)
                }
            }
        }));
    }
    let mut leaders = 0;
    for task in tasks {
        let (leader, got) = task.await.unwrap();
        leaders += usize::from(leader);
        assert_eq!(got.as_ref(), Some(&entry));
    }
    assert_eq!(leaders, 1);
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_leader_releases_its_followers_at_once() {
    let coalescer = Coalescer::new();
    let Joined::Leader(guard) = coalescer.join(key("k")) else {
        panic!("first join leads");
    };
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let Joined::Follower(follower) = coalescer.join(key("k")) else {
            panic!("later joins follow");
        };
        waiting.push(tokio::spawn(follower.wait(LONG)));
    }
    tokio::task::yield_now().await;
    let began = Instant::now();
    drop(guard);
    for w in waiting {
        assert_eq!(w.await.unwrap(), None);
    }
    // The clock is paused and jumps only when every task is idle waiting on a timer: had the
    // followers not been woken, they would have waited out their hour.
    assert!(
        began.elapsed() < LONG,
        "followers waited {:?}",
        began.elapsed()
    );
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_leader_releases_its_followers_with_nothing() {
    let coalescer = Coalescer::new();
    let Joined::Leader(guard) = coalescer.join(key("k")) else {
        panic!("first join leads");
    };
    let Joined::Follower(follower) = coalescer.join(key("k")) else {
        panic!("second join follows");
    };
    let waiting = tokio::spawn(follower.wait(LONG));
    let began = Instant::now();
    guard.fail();
    assert_eq!(waiting.await.unwrap(), None);
    assert!(
        began.elapsed() < LONG,
        "the follower waited out its timeout"
    );
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_follower_gives_up_after_its_timeout() {
    let coalescer = Coalescer::new();
    let Joined::Leader(guard) = coalescer.join(key("slow")) else {
        panic!("first join leads");
    };
    let Joined::Follower(follower) = coalescer.join(key("slow")) else {
        panic!("second join follows");
    };
    let began = Instant::now();
    assert_eq!(follower.wait(Duration::from_secs(5)).await, None);
    assert!(began.elapsed() >= Duration::from_secs(5));
    // The leader is still at work and still leads.
    assert_eq!(coalescer.in_flight(), 1);
    assert!(matches!(coalescer.join(key("slow")), Joined::Follower(_)));
    guard.complete(Bytes::from_static(b"late"));
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test]
async fn a_follower_joining_just_before_completion_still_gets_the_entry() {
    let coalescer = Coalescer::new();
    let Joined::Leader(guard) = coalescer.join(key("k")) else {
        panic!("first join leads");
    };
    let Joined::Follower(follower) = coalescer.join(key("k")) else {
        panic!("second join follows");
    };
    guard.complete(Bytes::from_static(b"v"));
    // The follower starts waiting only after the leader finished.
    assert_eq!(follower.wait(LONG).await, Some(Bytes::from_static(b"v")));
    // The next request for the key leads again.
    assert!(matches!(coalescer.join(key("k")), Joined::Leader(_)));
}

#[tokio::test]
async fn different_keys_do_not_coalesce_and_nothing_leaks() {
    let coalescer = Coalescer::new();
    let mut guards = Vec::new();
    for n in 0..1000 {
        match coalescer.join(key(&n.to_string())) {
            Joined::Leader(guard) => guards.push(guard),
            Joined::Follower(_) => panic!("key {n} is new"),
        }
    }
    assert_eq!(coalescer.in_flight(), 1000);
    for (n, guard) in guards.into_iter().enumerate() {
        match n % 3 {
            0 => guard.complete(Bytes::from_static(b"v")),
            1 => guard.fail(),
            _ => drop(guard),
        }
    }
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_task_releases_its_followers() {
    let coalescer = Coalescer::new();
    let Joined::Leader(guard) = coalescer.join(key("k")) else {
        panic!("first join leads");
    };
    let Joined::Follower(follower) = coalescer.join(key("k")) else {
        panic!("second join follows");
    };
    // The leader's task is aborted mid-call, as when its client disconnects.
    let leader = tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    let began = Instant::now();
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(follower.wait(LONG).await, None);
    assert!(
        began.elapsed() < LONG,
        "the follower waited out its timeout"
    );
    assert_eq!(coalescer.in_flight(), 0);
}
