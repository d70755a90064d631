//! `portcullis-bench usage`: how fast the admin API answers a usage overview over a large
//! request log.
//!
//! It reads the databases `portcullis-bench logs` seeds (a million records over 30 days, on
//! SQLite and PostgreSQL; the same defaults, or `--database`), opening each through the store
//! crate first, which migrates it (the time that takes is printed: on a seed that predates the
//! usage rollups, it is their backfill). Then it starts the real gateway on that database and
//! times, over HTTP with the master key, the queries a console overview makes for the last
//! 30 days, 7 days and 24 hours of the seed: the totals, the time series (by day over 30 days,
//! by hour otherwise), the top 10 providers, models, teams and keys (`limit=10`), and every
//! key (2,000 groups, for scale); and the same overview as a viewer's console asks it (one
//! team's traffic, about 2% of the log) and a member's (one user's, about 0.2%) — p50 and max
//! over `--reps` repetitions, against the target of one second. It is a report, not a test: it exits 0 whether or not the target is met.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::logs::{
    DEFAULT_POSTGRES, DEFAULT_SQLITE, SEED_SETTING, for_each_database, free_port, stop,
};

/// What the `usage` subcommand was asked to do.
struct UsageArgs {
    gateway_bin: PathBuf,
    databases: Vec<String>,
    reps: usize,
}

const MASTER_KEY: &str = "bench-master-key-0123456789";

/// The target for each overview query, server time.
const TARGET: Duration = Duration::from_secs(1);

fn usage() -> ! {
    eprintln!(
        "usage: portcullis-bench usage [--gateway-bin PATH] [--database URL]... [--reps N]\n\
         \x20 --database  a database `portcullis-bench logs` seeded (repeatable; default both\n\
         \x20             {DEFAULT_SQLITE} and {DEFAULT_POSTGRES})\n\
         \x20 --reps      timed repetitions per query (default 5)"
    );
    std::process::exit(2)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> UsageArgs {
    let mut a = UsageArgs {
        gateway_bin: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/portcullis"
        )),
        databases: Vec::new(),
        reps: 5,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--gateway-bin" => a.gateway_bin = PathBuf::from(value()),
            "--database" => a.databases.push(value()),
            "--reps" => a.reps = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if a.databases.is_empty() {
        a.databases = vec![DEFAULT_SQLITE.to_owned(), DEFAULT_POSTGRES.to_owned()];
    }
    a.reps = a.reps.max(1);
    a
}

/// Runs the benchmark; the process's exit code.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let args = parse_args(args);
    for_each_database(&args.gateway_bin, &args.databases, |url| {
        run_one(&args, url)
    })
}

/// Migrates `url` (timing it) and returns the seed's last timestamp.
async fn open_seed(url: &str) -> Result<i64, String> {
    let started = Instant::now();
    let stores = portcullis_store::connect(url, 2)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    println!(
        "{url}: connected and migrated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let seed = stores
        .settings
        .get(SEED_SETTING)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no seed here: seed it with `portcullis-bench logs --database URL` first")?;
    let (n, end) = seed.split_once(':').ok_or("unreadable seed setting")?;
    let end_ms: i64 = end.parse().map_err(|_| "unreadable seed setting")?;
    println!("{url}: a seed of {n} records ending at {end_ms}");
    Ok(end_ms)
}

/// One timed query: what it is, and each repetition's time.
struct Timed {
    range: &'static str,
    what: String,
    rows: usize,
    times: Vec<Duration>,
}

impl Timed {
    fn p50(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }

    fn max(&self) -> Duration {
        self.times.iter().copied().max().unwrap_or_default()
    }
}

async fn run_one(args: &UsageArgs, url: &str) -> Result<(), String> {
    let end_ms = open_seed(url).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let config = dir.path().join("usage-bench.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmaster_key: {MASTER_KEY}\ndatabase:\n  url: \"{url}\"\n\
             providers:\n  openai:\n    api_key: sk-not-used\n    base_url: http://127.0.0.1:9/v1\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut child = Command::new(&args.gateway_bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the gateway: {e}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let result = async {
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            return Err("the gateway did not become ready".to_owned());
        }
        measure(args, &client, &base, end_ms).await
    }
    .await;
    stop(&mut child);
    let rows = result?;
    print_table(url, args, &rows);
    Ok(())
}

/// An RFC 3339 time for a query parameter.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn measure(
    args: &UsageArgs,
    client: &reqwest::Client,
    base: &str,
    end_ms: i64,
) -> Result<Vec<Timed>, String> {
    const DAY: i64 = 86_400_000;
    let ranges: [(&str, i64, &str); 3] = [
        ("30 d", 30 * DAY, "day"),
        ("7 d", 7 * DAY, "hour"),
        ("24 h", DAY, "hour"),
    ];
    let mut out = Vec::new();
    for (range, span, interval) in ranges {
        let since = rfc3339(end_ms - span);
        let until = rfc3339(end_ms);
        let queries: Vec<(String, Vec<(&str, &str)>)> = vec![
            ("totals".to_owned(), vec![]),
            (
                format!("series by {interval}"),
                vec![("interval", interval)],
            ),
            (
                "top 10 providers".to_owned(),
                vec![("group_by", "provider"), ("limit", "10")],
            ),
            (
                "top 10 models".to_owned(),
                vec![("group_by", "model"), ("limit", "10")],
            ),
            (
                "top 10 teams".to_owned(),
                vec![("group_by", "team"), ("limit", "10")],
            ),
            (
                "top 10 keys".to_owned(),
                vec![("group_by", "key"), ("limit", "10")],
            ),
            ("every key".to_owned(), vec![("group_by", "key")]),
            // What a viewer's overview asks (its team's traffic), then a member's (its own).
            ("team: totals".to_owned(), vec![("team", "team-07")]),
            (
                format!("team: series by {interval}"),
                vec![("team", "team-07"), ("interval", interval)],
            ),
            (
                "team: top 10 models".to_owned(),
                vec![("team", "team-07"), ("group_by", "model"), ("limit", "10")],
            ),
            (
                "team: top 10 keys".to_owned(),
                vec![("team", "team-07"), ("group_by", "key"), ("limit", "10")],
            ),
            ("user: totals".to_owned(), vec![("user", "user-123")]),
            (
                format!("user: series by {interval}"),
                vec![("user", "user-123"), ("interval", interval)],
            ),
            (
                "user: top 10 models".to_owned(),
                vec![("user", "user-123"), ("group_by", "model"), ("limit", "10")],
            ),
        ];
        for (what, extra) in queries {
            let mut params: Vec<(&str, &str)> = vec![("since", &since), ("until", &until)];
            params.extend(extra);
            let mut times = Vec::with_capacity(args.reps);
            let mut rows = 0;
            // One untimed request first: the database's cache warmed as a console's would be.
            for rep in 0..=args.reps {
                let started = Instant::now();
                let response = client
                    .get(format!("{base}/admin/usage"))
                    .query(&params)
                    .bearer_auth(MASTER_KEY)
                    .send()
                    .await
                    .map_err(|e| format!("{range} {what}: {e}"))?;
                let status = response.status();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("{range} {what}: {e}"))?;
                let took = started.elapsed();
                if !status.is_success() {
                    return Err(format!(
                        "{range} {what}: {status}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("{range} {what}: {e}"))?;
                rows = v["data"].as_array().map_or(0, Vec::len);
                if rep > 0 {
                    times.push(took);
                }
            }
            out.push(Timed {
                range,
                what,
                rows,
                times,
            });
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(url: &str, args: &UsageArgs, rows: &[Timed]) {
    println!(
        "\nGET /admin/usage on {url} ({} reps each, after one untimed)\n",
        args.reps
    );
    println!(
        "| range | query | rows | p50 ms | max ms | target {} ms |",
        TARGET.as_millis()
    );
    println!("|---|---|---:|---:|---:|---|");
    for t in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {} |",
            t.range,
            t.what,
            t.rows,
            ms(t.p50()),
            ms(t.max()),
            if t.max() <= TARGET { "ok" } else { "MISSED" }
        );
    }
    println!();
}
