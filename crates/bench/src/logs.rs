//! `portcullis-bench logs`: how fast the admin API reads a large request log.
//!
//! For each database (`--database`, SQLite and PostgreSQL by default) it seeds a request log of
//! `--records` records (one million by default) through the store crate's own writes — the
//! statements the gateway's log writer runs — spread as a real gateway's would be: 30 days of
//! timestamps, 20 models of 6 providers, 15 routes, 50 teams, 500 users, 2000 keys, mostly 200s
//! with some 429s, 4xx and 5xx, cache statuses, metadata on about half the records, a few small
//! bodies. A database that already holds the same seed is reused as it is.
//!
//! Then it starts the real gateway on that database and times, over HTTP with the master key,
//! `GET /admin/logs?limit=50` unfiltered and with each single filter, the second page through
//! `next_cursor`, and `GET /admin/logs/{id}`: p50 and max over `--reps` repetitions, against
//! the targets (300 ms for the first page, 500 ms with a filter). Optionally (`--writer N`) it
//! also times appending N more records in the log writer's batches, then deletes them again.
//! With `--load N` the same queries are timed a second time while N closed-loop clients send
//! chat completions through the same gateway (to an in-process mock upstream; every one of
//! them logged, so the log grows meanwhile), and the LLM path's rate and latency are reported
//! alone and while the console's queries run — the console must stay fast under load, and
//! must not slow the traffic it watches.
//! It is a report, not a test: it exits 0 whether or not the targets are met.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_store::{LogRecord, Stores};
use serde_json::Value;
use uuid::Uuid;

/// What the `logs` subcommand was asked to do.
struct LogsArgs {
    gateway_bin: PathBuf,
    databases: Vec<String>,
    records: u64,
    reps: usize,
    writer: u64,
    reseed: bool,
    load: usize,
}

pub(crate) const DEFAULT_SQLITE: &str = "sqlite:/tmp/portcullis-bench-logs.db";
pub(crate) const DEFAULT_POSTGRES: &str =
    "postgres://postgres@127.0.0.1:5432/test?options[search_path]=bench_logs";

/// The settings row that says which seed a database holds.
pub(crate) const SEED_SETTING: &str = "bench.logs.seed";

/// Days of timestamps the seed spans.
const SEED_DAYS: i64 = 30;

/// Records per `append` while seeding.
const SEED_BATCH: usize = 2000;

/// Records per `append` when timing the writer: the log writer's default batch size.
const WRITER_BATCH: usize = 512;

fn usage() -> ! {
    eprintln!(
        "usage: portcullis-bench logs [--gateway-bin PATH] [--database URL]... [--records N] [--reps N]\n\
         \x20      [--writer N] [--reseed] [--load N]\n\
         \x20 --database  sqlite:/path or postgres://… (repeatable; default both {DEFAULT_SQLITE}\n\
         \x20             and {DEFAULT_POSTGRES})\n\
         \x20 --records   records to seed (default 1000000); a database holding this seed is reused\n\
         \x20 --reps      timed repetitions per query (default 9)\n\
         \x20 --writer N  also time appending N records in the log writer's batches (default 0)\n\
         \x20 --reseed    seed again even when the database holds the seed (SQLite: recreates the file)\n\
         \x20 --load N    also time the queries while N clients send chat completions through the gateway"
    );
    std::process::exit(2)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> LogsArgs {
    let mut a = LogsArgs {
        gateway_bin: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/portcullis"
        )),
        databases: Vec::new(),
        records: 1_000_000,
        reps: 9,
        writer: 0,
        reseed: false,
        load: 0,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--gateway-bin" => a.gateway_bin = PathBuf::from(value()),
            "--database" => a.databases.push(value()),
            "--records" => a.records = value().parse().unwrap_or_else(|_| usage()),
            "--reps" => a.reps = value().parse().unwrap_or_else(|_| usage()),
            "--writer" => a.writer = value().parse().unwrap_or_else(|_| usage()),
            "--reseed" => a.reseed = true,
            "--load" => a.load = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if a.databases.is_empty() {
        a.databases = vec![DEFAULT_SQLITE.to_owned(), DEFAULT_POSTGRES.to_owned()];
    }
    a.reps = a.reps.max(1);
    a
}

/// Runs the subcommand; the process's exit code.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let args = parse_args(args);
    for_each_database(&args.gateway_bin, &args.databases, |url| {
        run_one(&args, url)
    })
}

/// Runs `run` on each database URL in turn, after checking the gateway binary exists; the
/// process's exit code (1 if any run failed). Shared by the `logs` and `usage` benchmarks.
pub(crate) fn for_each_database<'a, F, Fut>(
    gateway_bin: &std::path::Path,
    databases: &'a [String],
    mut run: F,
) -> i32
where
    F: FnMut(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if !gateway_bin.exists() {
        eprintln!(
            "{} does not exist: build it with `cargo build --release -p portcullis` (or pass --gateway-bin)",
            gateway_bin.display()
        );
        return 1;
    }
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    let mut failed = false;
    for url in databases {
        if let Err(e) = rt.block_on(run(url)) {
            eprintln!("{url}: {e}");
            failed = true;
        }
    }
    i32::from(failed)
}

/// A small deterministic generator (SplitMix64): the same seed gives the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

const PROVIDERS: [&str; 6] = [
    "openai",
    "anthropic",
    "gemini",
    "bedrock",
    "azure",
    "mistral",
];

/// Twenty models, most popular first, with the provider serving each.
const MODELS: [(&str, usize); 20] = [
    ("gpt-4o-mini", 0),
    ("claude-sonnet-4-5", 1),
    ("gemini-2.5-flash", 2),
    ("gpt-4o", 0),
    ("claude-haiku-4-5", 1),
    ("gpt-4.1", 0),
    ("anthropic.claude-3-5-sonnet", 3),
    ("gpt-4o-azure", 4),
    ("mistral-large-latest", 5),
    ("gemini-2.5-pro", 2),
    ("o4-mini", 0),
    ("claude-opus-4-1", 1),
    ("amazon.nova-pro", 3),
    ("gpt-4.1-mini", 4),
    ("mistral-small-latest", 5),
    ("text-embedding-3-small", 0),
    ("gemini-embedding-001", 2),
    ("meta.llama3-70b", 3),
    ("codestral-latest", 5),
    ("o3", 4),
];

/// The keys of the seed: 2000 of them, and one used only a handful of times.
const KEYS: u64 = 2000;
const RARE_KEY: &str = "key-rare";

/// A metadata value about one record in a hundred thousand carries.
const RARE_EXPERIMENT: &str = "exp-rare";

/// Picks a model index, the first ones far more often (weights 1/(i+1)).
fn pick_model(rng: &mut Rng) -> usize {
    // Cumulative weights of 1/(i+1) for i in 0..20, scaled by 1000.
    const CUMULATIVE: [u64; 20] = [
        1000, 1500, 1833, 2083, 2283, 2450, 2593, 2718, 2829, 2929, 3020, 3103, 3180, 3252, 3318,
        3381, 3440, 3495, 3548, 3598,
    ];
    let x = rng.below(CUMULATIVE[19]);
    CUMULATIVE.iter().position(|c| x < *c).unwrap_or(19)
}

/// The record `i` of `n`, spread over `SEED_DAYS` days ending at `end_ms`.
fn seed_record(rng: &mut Rng, i: u64, n: u64, end_ms: i64) -> LogRecord {
    let span = SEED_DAYS * 86_400_000;
    let start = end_ms - span;
    let step = span as f64 / n.max(1) as f64;
    let ts_ms = start + (i as f64 * step) as i64 + rng.below(step.max(1.0) as u64) as i64;
    let mut rand10 = [0u8; 10];
    rand10[..8].copy_from_slice(&rng.next().to_le_bytes());
    rand10[8..].copy_from_slice(&rng.next().to_le_bytes()[..2]);
    let id = uuid::Builder::from_unix_timestamp_millis(ts_ms as u64, &rand10).into_uuid();

    let endpoint = match rng.below(100) {
        0..85 => "chat_completions",
        85..95 => "messages",
        _ => "embeddings",
    };
    let dialect = if endpoint == "messages" {
        "anthropic"
    } else {
        "openai"
    };
    let mut r = LogRecord::new(id, ts_ms, endpoint, dialect);
    let (model, provider) = MODELS[pick_model(rng)];
    let provider = PROVIDERS[provider];
    // Keys: most spread evenly, one used once in 200,000 records.
    let key = if rng.below(200_000) == 0 {
        RARE_KEY.to_owned()
    } else {
        format!("key-{:04}", rng.below(KEYS))
    };
    let key_n = key
        .strip_prefix("key-")
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    let user = key_n % 500;
    if rng.chance(50) {
        r.subject = Some("master".to_owned());
        r.auth_method = Some("master_key");
    } else {
        r.subject = Some(key.clone());
        r.auth_method = Some("virtual_key");
        r.key_id = Some(key);
        r.user = Some(format!("user-{user:03}"));
        r.team = Some(format!("team-{:02}", user % 50));
    }
    if rng.chance(500) {
        let route = format!("route-{:02}", rng.below(15));
        r.requested_model = Some(route.clone());
        r.route = Some(Arc::from(route));
    } else if rng.chance(500) {
        r.requested_model = Some(format!("{provider}/{model}"));
    } else {
        r.requested_model = Some(model.to_owned());
    }
    r.provider = Some(Arc::from(provider));
    r.model = Some(Arc::from(model));
    r.provider_key_id = Some(format!("{provider}:default"));
    r.attempts = 1;
    r.status = match rng.below(1000) {
        0..920 => 200,
        920..950 => 429,
        950..962 => 400,
        962..968 => 401,
        968..972 => 404,
        972..982 => 500,
        982..994 => 502,
        994..998 => 503,
        _ => 504,
    };
    if r.status != 200 {
        r.error_type = Some(
            match r.status {
                429 => "RateLimitError",
                400..500 => "InvalidRequestError",
                _ => "UpstreamError",
            }
            .to_owned(),
        );
        r.error_message = Some(format!("upstream answered {}", r.status));
        if r.status >= 500 && rng.chance(500) {
            r.attempts = 2;
            r.attempt_log = Some(format!(
                r#"[{{"target":"{provider}/{model}","status":{},"error":"upstream error","latency_ms":120}},{{"target":"{provider}/{model}","status":{},"error":"upstream error","latency_ms":95}}]"#,
                r.status, r.status
            ));
        }
    }
    r.stream = rng.chance(300);
    r.latency_us = 150_000 + rng.below(4_000_000);
    if r.stream {
        r.ttft_us = Some(80_000 + rng.below(600_000));
    }
    if r.status == 200 {
        r.input_tokens = 50 + rng.below(4000);
        r.output_tokens = if endpoint == "embeddings" {
            0
        } else {
            10 + rng.below(1500)
        };
        r.cached_tokens = if rng.chance(200) {
            r.input_tokens / 2
        } else {
            0
        };
        r.cost_usd = Some((r.input_tokens as f64 * 0.15 + r.output_tokens as f64 * 0.6) / 1e6);
    }
    r.cache_status = match rng.below(100) {
        0..40 => None,
        40..75 => Some("MISS"),
        75..90 => Some("HIT"),
        _ => Some("BYPASS"),
    };
    if rng.chance(500) {
        let env = match rng.below(10) {
            0..7 => "prod",
            7..9 => "staging",
            _ => "dev",
        };
        let mut meta = serde_json::Map::new();
        meta.insert("env".into(), env.into());
        meta.insert("app".into(), format!("app-{}", rng.below(30)).into());
        if rng.chance(600) {
            meta.insert("feature".into(), format!("f-{}", rng.below(200)).into());
        }
        if rng.chance(300) {
            meta.insert("ticket".into(), rng.below(100_000).into());
        }
        if rng.below(50_000) == 0 {
            meta.insert("experiment".into(), RARE_EXPERIMENT.into());
        }
        r.metadata = Some(Value::Object(meta).to_string());
    }
    if rng.chance(200) {
        r.session_id = Some(format!("conv-{}", rng.below(50_000)));
    }
    if rng.chance(100) {
        r.agent = Some(format!("agent-{}", rng.below(10)));
    }
    if rng.chance(30) {
        r.request_body = Some(format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Summarise ticket {i} in one line."}}]}}"#
        ));
        r.response_body = Some(
            r#"{"choices":[{"message":{"role":"assistant","content":"A short summary."}}]}"#
                .to_owned(),
        );
    }
    r
}

/// What a seeded database holds, as its settings row records it: `records:end_ms`.
fn parse_seed(v: &str) -> Option<(u64, i64)> {
    let (n, end) = v.split_once(':')?;
    Some((n.parse().ok()?, end.parse().ok()?))
}

/// The schema a `postgres://…?options[search_path]=S` URL names, when it names a plain one.
fn schema_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("options[search_path]=")?;
    let schema = rest.split('&').next().unwrap_or(rest);
    (!schema.is_empty()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(schema)
}

/// Creates the schema the URL names, when it names one.
async fn ensure_schema(url: &str) -> Result<(), String> {
    let Some(schema) = schema_of(url) else {
        return Ok(());
    };
    let pool = sqlx::PgPool::connect(url)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&pool)
        .await
        .map_err(|e| format!("creating schema {schema}: {e}"))?;
    pool.close().await;
    Ok(())
}

/// Seeds `url` unless it holds the seed already; returns the seed's last timestamp.
async fn seed(args: &LogsArgs, url: &str) -> Result<i64, String> {
    let postgres = url.starts_with("postgres");
    if args.reseed {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        } else if let Some(schema) = schema_of(url) {
            let pool = sqlx::PgPool::connect(url)
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .map_err(|e| format!("dropping schema {schema}: {e}"))?;
            pool.close().await;
        } else {
            return Err(
                "--reseed on PostgreSQL needs a URL with options[search_path]=SCHEMA".into(),
            );
        }
    }
    if postgres {
        ensure_schema(url).await?;
    }
    let started = Instant::now();
    let stores = portcullis_store::connect(url, 8)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    println!(
        "{url}: connected and migrated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(v) = stores
        .settings
        .get(SEED_SETTING)
        .await
        .map_err(|e| e.to_string())?
        && let Some((n, end_ms)) = parse_seed(&v)
    {
        if n == args.records {
            println!("{url}: reusing the seed of {n} records");
            return Ok(end_ms);
        }
        return Err(format!(
            "the database holds a seed of {n} records, not {}: pass --reseed",
            args.records
        ));
    }
    let end_ms = jiff::Timestamp::now().as_millisecond();
    let n = args.records;
    println!("{url}: seeding {n} records…");
    let started = Instant::now();
    // Several writers on PostgreSQL; SQLite takes one writer at a time anyway.
    let writers: u64 = if postgres { 4 } else { 1 };
    let per = n.div_ceil(writers);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let stores: Stores = stores.clone();
        let (from, to) = (w * per, ((w + 1) * per).min(n));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x5EED_0000 + w);
            let mut batch = Vec::with_capacity(SEED_BATCH);
            let mut i = from;
            while i < to {
                batch.clear();
                while batch.len() < SEED_BATCH && i < to {
                    batch.push(seed_record(&mut rng, i, n, end_ms));
                    i += 1;
                }
                stores
                    .logs
                    .append(&batch)
                    .await
                    .map_err(|e| format!("seeding: {e}"))?;
                if w == 0 && (i - from) % 100_000 < SEED_BATCH as u64 {
                    eprintln!("  … {} of {}", (i - from) * writers, n);
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{url}: seeded {n} records in {took:.1} s ({:.0} records/s)",
        n as f64 / took
    );
    stores
        .settings
        .put_if_absent(SEED_SETTING, &format!("{n}:{end_ms}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(end_ms)
}

/// Times appending `args.writer` records in the log writer's batches after the seed, then
/// deletes them so the seed stays as it was.
async fn time_writer(args: &LogsArgs, url: &str, end_ms: i64) -> Result<(), String> {
    if args.writer == 0 {
        return Ok(());
    }
    let stores = portcullis_store::connect(url, 4)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut rng = Rng(0xF00D);
    let n = args.writer;
    // Timestamps after the seed's last one, spread as the seed's are.
    let records: Vec<LogRecord> = (0..n)
        .map(|i| seed_record(&mut rng, i, n, end_ms + 1 + SEED_DAYS * 86_400_000))
        .collect();
    let started = Instant::now();
    for batch in records.chunks(WRITER_BATCH) {
        stores
            .logs
            .append(batch)
            .await
            .map_err(|e| format!("appending: {e}"))?;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{url}: writer: {n} records in batches of {WRITER_BATCH} in {took:.2} s — {:.0} records/s, {:.1} µs per record",
        n as f64 / took,
        took * 1e6 / n as f64
    );
    // Remove them again.
    let cleanup = async {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await?;
            let _ = sqlx::query("DELETE FROM request_log_metadata WHERE ts_ms > $1")
                .bind(end_ms)
                .execute(&pool)
                .await;
            sqlx::query("DELETE FROM request_logs WHERE ts_ms > $1")
                .bind(end_ms)
                .execute(&pool)
                .await?;
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await?;
            let _ = sqlx::query("DELETE FROM request_log_metadata WHERE ts_ms > $1")
                .bind(end_ms)
                .execute(&pool)
                .await;
            sqlx::query("DELETE FROM request_logs WHERE ts_ms > $1")
                .bind(end_ms)
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        Ok::<(), sqlx::Error>(())
    };
    cleanup
        .await
        .map_err(|e| format!("deleting the timed records: {e}"))
}

pub(crate) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn spawn(bin: &std::path::Path, config: &std::path::Path) -> Result<Child, String> {
    Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the gateway: {e}"))
}

/// One timed query's outcome.
struct Timed {
    name: String,
    status: u16,
    rows: Option<usize>,
    p50_ms: f64,
    max_ms: f64,
    target_ms: f64,
}

/// GETs `path` once untimed, then `reps` times; the answer of the last.
async fn time_get(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    path: &str,
    reps: usize,
    target_ms: f64,
) -> Result<(Timed, Value), String> {
    let get = || async {
        let started = Instant::now();
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(crate::MASTER_KEY)
            .send()
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|e| format!("{name}: {e}"))?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok::<_, String>((status, bytes, ms))
    };
    get().await?;
    let mut times = Vec::with_capacity(reps);
    let mut last = (0, bytes::Bytes::new());
    for _ in 0..reps {
        let (status, bytes, ms) = get().await?;
        times.push(ms);
        last = (status, bytes);
    }
    times.sort_by(f64::total_cmp);
    let v: Value = serde_json::from_slice(&last.1).unwrap_or(Value::Null);
    let rows = match v.get("data") {
        Some(Value::Array(d)) => Some(d.len()),
        _ if last.0 == 200 => Some(1),
        _ => None,
    };
    Ok((
        Timed {
            name: name.to_owned(),
            status: last.0,
            rows,
            p50_ms: times[times.len() / 2],
            max_ms: times[times.len() - 1],
            target_ms,
        },
        v,
    ))
}

async fn run_one(args: &LogsArgs, url: &str) -> Result<(), String> {
    let end_ms = seed(args, url).await?;
    time_writer(args, url, end_ms).await?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let config = dir.path().join("logs.yaml");
    let mock =
        portcullis_test_support::MockUpstream::start_with(portcullis_test_support::MockOptions {
            record_requests: false,
            ..Default::default()
        })
        .await;
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmaster_key: {key}\ndatabase:\n  url: \"{url}\"\n\
             providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {base}\n",
            key = crate::MASTER_KEY,
            base = mock.openai_base_url(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut gateway = spawn(&args.gateway_bin, &config)?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|_| "address")?;
    // Migrations of a large log may take a while: wait up to ten minutes.
    let mut ready = false;
    for _ in 0..40 {
        if crate::wait_ready(addr).await.is_ok() {
            ready = true;
            break;
        }
        if let Ok(Some(status)) = gateway.try_wait() {
            return Err(format!("the gateway exited before it was ready: {status}"));
        }
    }
    if !ready {
        stop(&mut gateway);
        return Err("the gateway did not become ready".to_owned());
    }
    println!(
        "{url}: gateway ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let base = format!("http://{addr}");
    let started = Instant::now();
    let result = measure(args, &base, end_ms).await;
    let idle_took = started.elapsed();
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            stop(&mut gateway);
            return Err(e);
        }
    };
    print_table(url, args, &rows, "idle gateway");
    if args.load > 0 {
        let loaded = measure_under_load(args, addr, &base, end_ms, idle_took).await;
        stop(&mut gateway);
        let (rows, alone, during) = loaded?;
        print_table(
            url,
            args,
            &rows,
            &format!("{} clients sending chat completions meanwhile", args.load),
        );
        println!(
            "LLM path at concurrency {}: alone {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} errors); \
             while the queries ran {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} errors)\n",
            args.load,
            alone.rate(),
            alone.ms(0.5),
            alone.ms(0.99),
            alone.errors,
            during.rate(),
            during.ms(0.5),
            during.ms(0.99),
            during.errors
        );
    } else {
        stop(&mut gateway);
    }
    Ok(())
}

/// The chat completion the load clients send, with the master key.
fn chat_target(addr: std::net::SocketAddr) -> crate::load::Target {
    crate::load::Target {
        addr,
        path: "/v1/chat/completions".to_owned(),
        authorization: format!("Bearer {}", crate::MASTER_KEY),
        body: bytes::Bytes::from(
            serde_json::json!({"model": "openai/gpt-4o-mini", "max_tokens": 16,
                "messages": [{"role": "user", "content": "Say hello."}]})
            .to_string(),
        ),
        first_token: false,
    }
}

/// The LLM path alone for ten seconds, then the queries again while the same load runs for
/// as long as they take (the idle run's time, with room to spare; the load ends at its own
/// deadline, after the queries).
async fn measure_under_load(
    args: &LogsArgs,
    addr: std::net::SocketAddr,
    base: &str,
    end_ms: i64,
    idle_took: Duration,
) -> Result<(Vec<Timed>, crate::load::Outcome, crate::load::Outcome), String> {
    let target = chat_target(addr);
    let alone = crate::load::run(
        &target,
        args.load,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;
    let window = idle_took.mul_f64(3.0) + Duration::from_secs(10);
    let during = {
        let target = target.clone();
        let load = args.load;
        tokio::spawn(async move {
            crate::load::run(&target, load, Duration::from_secs(2), window).await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = measure(args, base, end_ms).await?;
    let during = during.await.map_err(|e| e.to_string())?;
    Ok((rows, alone, during))
}

async fn measure(args: &LogsArgs, base: &str, end_ms: i64) -> Result<Vec<Timed>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let reps = args.reps;
    let day_start = end_ms - 15 * 86_400_000;
    let mut out = Vec::new();
    let (first, page) = time_get(
        &client,
        base,
        "first page",
        "/admin/logs?limit=50",
        reps,
        300.0,
    )
    .await?;
    out.push(first);
    let queries: Vec<(&str, String)> = vec![
        ("model (common)", "model=gpt-4o-mini".into()),
        ("model (rare)", "model=o3".into()),
        ("model (no match)", "model=no-such-model".into()),
        ("requested_model", "requested_model=openai/gpt-4o".into()),
        ("provider", "provider=anthropic".into()),
        ("status=200", "status=200".into()),
        ("status=429", "status=429".into()),
        ("status=5xx", "status=5xx".into()),
        ("status=4xx", "status=4xx".into()),
        ("status=404", "status=404".into()),
        ("status=201 (no match)", "status=201".into()),
        ("team", "team=team-07".into()),
        ("user", "user=user-123".into()),
        ("key", "key=key-0042".into()),
        ("key (rare)", format!("key={RARE_KEY}")),
        ("route", "route=route-03".into()),
        ("route (no match)", "route=no-such-route".into()),
        ("cache=hit", "cache=hit".into()),
        ("cache=bypass", "cache=bypass".into()),
        ("metadata.env=prod", "metadata.env=prod".into()),
        ("metadata (no match)", "metadata.env=no-such-env".into()),
        ("metadata.feature=f-123", "metadata.feature=f-123".into()),
        (
            "metadata.experiment (rare)",
            format!("metadata.experiment={RARE_EXPERIMENT}"),
        ),
        (
            "since..until (one day)",
            format!("since={day_start}&until={}", day_start + 86_400_000),
        ),
        (
            "since (last 30 days)",
            format!("since={}", end_ms - SEED_DAYS * 86_400_000),
        ),
    ];
    let mut day_page = Value::Null;
    let mut model_page = Value::Null;
    for (name, q) in &queries {
        let (t, v) = time_get(
            &client,
            base,
            name,
            &format!("/admin/logs?limit=50&{q}"),
            reps,
            500.0,
        )
        .await?;
        if name.starts_with("since..until") {
            day_page = v;
        } else if *name == "model (common)" {
            model_page = v;
        }
        out.push(t);
    }
    for (name, page, filter) in [
        ("page 2 (cursor)", &page, String::new()),
        (
            "model page 2 (cursor)",
            &model_page,
            "&model=gpt-4o-mini".to_owned(),
        ),
    ] {
        if let Some(cursor) = page["next_cursor"].as_str() {
            let (t, _) = time_get(
                &client,
                base,
                name,
                &format!("/admin/logs?limit=50&cursor={cursor}{filter}"),
                reps,
                500.0,
            )
            .await?;
            out.push(t);
        }
    }
    for (name, page) in [
        ("GET /admin/logs/{id} (newest)", &page),
        ("GET /admin/logs/{id} (day 15)", &day_page),
    ] {
        if let Some(id) = page["data"][0]["id"].as_str() {
            let (t, _) = time_get(
                &client,
                base,
                name,
                &format!("/admin/logs/{id}"),
                reps,
                500.0,
            )
            .await?;
            out.push(t);
        }
    }
    let (t, _) = time_get(
        &client,
        base,
        "GET /admin/logs/{id} (unknown)",
        &format!("/admin/logs/{}", Uuid::now_v7()),
        reps,
        500.0,
    )
    .await?;
    out.push(t);
    Ok(out)
}

fn print_table(url: &str, args: &LogsArgs, rows: &[Timed], condition: &str) {
    println!(
        "\n{url} — {} records, {condition}, {} repetitions per query (p50 / max, milliseconds, over HTTP)\n",
        args.records, args.reps
    );
    println!(
        "| query | status | rows | p50 ms | max ms | target ms | met |\n|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let met = if r.status >= 500 || (r.status == 400) {
            "—"
        } else if r.p50_ms < r.target_ms {
            "✓"
        } else {
            "✗"
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {met} |",
            r.name,
            r.status,
            r.rows.map_or("—".to_owned(), |n| n.to_string()),
            r.p50_ms,
            r.max_ms,
            r.target_ms
        );
    }
    println!();
}

pub(crate) fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
