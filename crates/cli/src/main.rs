//! The `portcullis` binary: `serve` runs the gateway, `check` validates a configuration,
//! `keys` manages virtual keys ([`keys`]), `users`, `teams` and `provider-keys` the rest of
//! tenancy ([`tenancy`]), `audit verify` checks the decision audit's chains ([`audit`]).
//!
//! This is the only place that uses `anyhow`, prints to the terminal and reads the process
//! environment; everything else lives in the library crates.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_config::{Config, ProcessEnv, Source};
use portcullis_gateway::{Gateway, MasterKeyOrigin};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod audit;
mod keys;
mod reload;
mod tenancy;

/// The environment variables `--help` lists.
const ENVIRONMENT_HELP: &str = "\
Environment:
  PORTCULLIS_CONFIG         configuration file (as --config)
  PORTCULLIS_LISTEN         host:port to listen on (as serve --listen; default 127.0.0.1:8800)
  PORTCULLIS_MASTER_KEY     the master key (at least 16 characters); when unset, one is
                            generated on first start and only its hash is stored
  PORTCULLIS_DATABASE_URL   sqlite://FILE or postgres://… (default sqlite://portcullis.db)
  PORTCULLIS_REDIS_URL      redis://… shared by replicas for limits, caches and breakers
  PORTCULLIS_SECRET_KEY     32-byte base64 key sealing stored provider keys (and OAuth)
  PORTCULLIS_MASTER_KEY_FILE where a generated master key is written when not on a terminal
  PORTCULLIS_LOG            log filter (e.g. info, portcullis=debug; default info)
  PORTCULLIS_LOG_FORMAT     `json` for JSON log lines (default: human-readable)
  OTEL_EXPORTER_OTLP_ENDPOINT  OTLP collector base URL: traces are exported when it (or
                            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or telemetry.otlp_endpoint)
                            is set; OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or grpc),
                            OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
  Providers, without a file: OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY,
  MISTRAL_API_KEY, DEEPSEEK_API_KEY, GEMINI_API_KEY, …, OPENAI_BASE_URL and the other
  *_BASE_URL variables, OLLAMA_BASE_URL, CLOUDFLARE_ACCOUNT_ID with CLOUDFLARE_GATEWAY_ID
  (and CLOUDFLARE_AIG_TOKEN, CLOUDFLARE_AIG_UPSTREAM). With a file, `${VAR}` anywhere
  in it is taken from the environment.";

/// Portcullis: a self-hosted AI gateway.
#[derive(Parser)]
#[command(name = "portcullis", version, about, after_help = ENVIRONMENT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (YAML). Without one, the environment configures the gateway.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (`host:port`); overrides the file's `listen` and
        /// PORTCULLIS_LISTEN.
        #[arg(long, short)]
        listen: Option<String>,
    },
    /// Validate a configuration file and report every problem with the key it concerns.
    Check {
        /// Configuration file (YAML).
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Manage virtual keys in the configured database.
    Keys {
        /// Configuration file (YAML). Without one, the environment names the database. May
        /// also follow the subcommand (`portcullis audit verify --config FILE`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Box<keys::KeysCommand>,
    },
    /// Manage users in the configured database.
    Users {
        /// Configuration file (YAML). Without one, the environment names the database. May
        /// also follow the subcommand (`portcullis audit verify --config FILE`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: tenancy::UsersCommand,
    },
    /// Manage teams and their members in the configured database.
    Teams {
        /// Configuration file (YAML). Without one, the environment names the database. May
        /// also follow the subcommand (`portcullis audit verify --config FILE`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: tenancy::TeamsCommand,
    },
    /// The decision audit: `verify` checks that no record was changed, removed or reordered.
    Audit {
        /// Configuration file (YAML). Without one, the environment names the database. May
        /// also follow the subcommand (`portcullis audit verify --config FILE`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Manage stored provider keys (sealed with PORTCULLIS_SECRET_KEY).
    ProviderKeys {
        /// Configuration file (YAML). Without one, the environment names the database. May
        /// also follow the subcommand (`portcullis audit verify --config FILE`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: tenancy::ProviderKeysCommand,
    },
}

/// Runs a management command on a single-threaded runtime.
#[allow(clippy::print_stderr)]
fn manage(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc instead of glibc's allocator: less fragmentation under bursts of large request
/// bodies, and freed memory given back to the operating system at once (`portcullis-sys`;
/// README, "Memory").
#[global_allocator]
static ALLOCATOR: portcullis_sys::allocator::Allocator = portcullis_sys::allocator::Allocator;

fn main() -> ExitCode {
    portcullis_sys::allocator::return_memory_promptly();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Keys { config, command } => manage(keys::run(config, *command)),
        Command::Users { config, command } => manage(tenancy::users(config, command)),
        Command::Teams { config, command } => manage(tenancy::teams(config, command)),
        Command::Audit { config, command } => audit::run(config, &command),
        Command::ProviderKeys { config, command } => {
            manage(tenancy::provider_keys(config, command))
        }
        Command::Serve { config, listen } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                // A worker going idle hands back what other threads freed of its memory.
                .on_thread_park(portcullis_sys::allocator::collect_if_due)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let listen_flag = listen.is_some();
            let config = match load_config(config.as_deref(), listen) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let telemetry = init_tracing(config.telemetry.as_ref(), &runtime);
            let outcome = runtime.block_on(serve(config, listen_flag));
            // The last spans are exported (on the runtime, which is still there) before exiting.
            drop(telemetry);
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs to stderr, filtered by `PORTCULLIS_LOG`; and, when telemetry is configured, spans to
/// the OTLP collector (the returned guard exports the last ones when dropped).
fn init_tracing(
    telemetry: Option<&portcullis_telemetry::TelemetrySettings>,
    runtime: &tokio::runtime::Runtime,
) -> Option<portcullis_telemetry::TelemetryGuard> {
    let mut filter = EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Trace spans are for the collector; log lines do not carry them.
    if let Ok(directive) = format!("{}=off", portcullis_telemetry::TARGET).parse() {
        filter = filter.add_directive(directive);
    }
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Colour codes only for a person at a terminal, never into a file or a log collector.
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let log = if json {
        log.json().boxed()
    } else {
        log.compact().boxed()
    };
    // The exporter's connections live on the runtime.
    let installed = telemetry.map(|settings| {
        let _runtime = runtime.enter();
        portcullis_telemetry::install(settings)
    });
    let (traces, guard, failure) = match installed {
        Some(Ok((layer, guard))) => (Some(layer), Some(guard), None),
        Some(Err(e)) => (None, None, Some(e)),
        None => (None, None, None),
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(log.with_filter(filter))
        .init();
    match (telemetry, failure) {
        (Some(_), Some(e)) => tracing::error!("traces will not be exported: {e}"),
        (Some(settings), None) => tracing::info!(
            endpoint = %settings.endpoint,
            protocol = %settings.protocol,
            service = %settings.service_name,
            "exporting traces to {}",
            settings.endpoint
        ),
        (None, _) => {}
    }
    guard
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn check(path: &std::path::Path) -> ExitCode {
    let issues = match portcullis_config::load_file(path, &ProcessEnv) {
        Ok(c) => {
            println!(
                "{}: OK ({} providers, {} routes, {} aliases)",
                path.display(),
                c.providers.len(),
                c.routes.len(),
                c.aliases.len()
            );
            return ExitCode::SUCCESS;
        }
        Err(issues) => issues,
    };
    eprintln!(
        "{}: invalid configuration ({} problem{})",
        path.display(),
        issues.len(),
        if issues.len() == 1 { "" } else { "s" }
    );
    for issue in issues {
        eprintln!("  {issue}");
    }
    ExitCode::FAILURE
}

/// The configuration `serve` runs with: the file (or the environment), `--listen` on top.
fn load_config(path: Option<&Path>, listen: Option<String>) -> anyhow::Result<Config> {
    let mut config: Config = portcullis_config::load(path, &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.issues().join("\n  ")))?;
    if let Some(listen) = listen {
        config.listen = listen.parse().map_err(|_| {
            anyhow::anyhow!("--listen `{listen}` is not a host:port address (e.g. 127.0.0.1:8800)")
        })?;
    }
    Ok(config)
}

/// Serves `config`; `listen_flag`: its `listen` came from `--listen` (kept on every reload).
async fn serve(config: Config, listen_flag: bool) -> anyhow::Result<()> {
    // A SIGHUP while starting must not stop the gateway: once a handler is registered the
    // signal no longer terminates the process; the reloader takes over when serving.
    #[cfg(unix)]
    let _hangups_while_starting =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let problems = config.preflight();
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("invalid configuration:\n  {}", lines.join("\n  "));
    }
    if config.providers.is_empty() {
        tracing::warn!(
            "no provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, … or write a config file"
        );
    }
    let gateway = Gateway::build(&config)
        .await
        .context("starting the gateway")?;
    announce_master_key(gateway.master_key(), &config);
    reload::Reloader::new(
        gateway.state().clone(),
        &config,
        listen_flag.then_some(config.listen),
    )
    .spawn();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let source = match &config.source {
        Source::File(p) => p.display().to_string(),
        Source::Environment => "the environment".to_owned(),
    };
    tracing::info!(
        listen = %config.listen,
        providers = config.providers.len(),
        config = %source,
        "portcullis is listening on http://{}",
        config.listen
    );
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("portcullis stopped");
    Ok(())
}

/// Shows a freshly generated master key once — on the terminal when there is one; otherwise
/// (a service whose output a log collector keeps) in a file only its owner can read, whose path
/// is logged.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn announce_master_key(origin: &MasterKeyOrigin, config: &Config) {
    match origin {
        MasterKeyOrigin::Generated(key) => {
            let notice = format!(
                "\nNo master key was configured, so one was generated. Only its hash is stored;\n\
                 this is the only time it is shown:\n\n    {}\n\n\
                 Use it as `Authorization: Bearer <key>`, or set PORTCULLIS_MASTER_KEY to choose your own.\n",
                key.expose()
            );
            if std::io::stdout().is_terminal() {
                println!("{notice}");
                return;
            }
            if std::io::stderr().is_terminal() {
                eprintln!("{notice}");
                return;
            }
            let path = master_key_file(config);
            match write_private(&path, &format!("{}\n", key.expose())) {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    "no master key was configured, so one was generated and written to {} \
                     (readable only by its owner): keep it somewhere safe and delete the file",
                    path.display()
                ),
                Err(e) => tracing::error!(
                    path = %path.display(),
                    "no master key was configured and the generated one could not be written \
                     to {} ({e}); set PORTCULLIS_MASTER_KEY to a key of your choosing and restart",
                    path.display()
                ),
            }
        }
        MasterKeyOrigin::Stored => {
            tracing::info!("using the master key generated on first start (its hash is stored)");
        }
        MasterKeyOrigin::Configured => {}
    }
}

/// Where a generated master key is written when no terminal is attached:
/// `PORTCULLIS_MASTER_KEY_FILE`, else next to the SQLite database, else the working directory.
fn master_key_file(config: &Config) -> PathBuf {
    if let Some(p) = std::env::var_os("PORTCULLIS_MASTER_KEY_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = config
        .database
        .sqlite_file()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join("portcullis-master-key")
}

/// Writes `text` to a new file only its owner can read (replacing an older one).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
