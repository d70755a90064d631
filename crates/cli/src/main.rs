//! The `portcullis` binary: `serve` runs the gateway, `check` validates a configuration,
//! `keys` manages virtual keys ([`keys`]).
//!
//! This is the only place that uses `anyhow`, prints to the terminal and reads the process
//! environment; everything else lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_config::{Config, ProcessEnv, Source};
use portcullis_gateway::{Gateway, MasterKeyOrigin};
use tracing_subscriber::EnvFilter;

mod keys;

/// Portcullis: a self-hosted AI gateway.
#[derive(Parser)]
#[command(name = "portcullis", version, about)]
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
    },
    /// Validate a configuration file and report every problem with the key it concerns.
    Check {
        /// Configuration file (YAML).
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Manage virtual keys in the configured database.
    Keys {
        /// Configuration file (YAML). Without one, the environment names the database.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Box<keys::KeysCommand>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Keys { config, command } => {
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
            match runtime.block_on(keys::run(config, *command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            init_tracing();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

#[allow(clippy::print_stdout)]
fn check(path: &std::path::Path) -> ExitCode {
    match portcullis_config::load(Some(path), &ProcessEnv) {
        Ok(c) => {
            println!(
                "{}: OK ({} providers, {} routes, {} aliases)",
                path.display(),
                c.providers.len(),
                c.routes.len(),
                c.aliases.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration", path.display());
            for issue in e.issues() {
                eprintln!("  {issue}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config: Config = portcullis_config::load(path.as_deref(), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.issues().join("\n  ")))?;
    if config.providers.is_empty() {
        tracing::warn!(
            "no provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, … or write a config file"
        );
    }
    let gateway = Gateway::build(&config)
        .await
        .context("starting the gateway")?;
    announce_master_key(gateway.master_key());
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

/// Prints a freshly generated master key, the only time it is ever shown.
#[allow(clippy::print_stdout)]
fn announce_master_key(origin: &MasterKeyOrigin) {
    match origin {
        MasterKeyOrigin::Generated(key) => {
            println!(
                "\nNo master key was configured, so one was generated. Only its hash is stored;\n\
                 this is the only time it is shown:\n\n    {}\n\n\
                 Use it as `Authorization: Bearer <key>`, or set PORTCULLIS_MASTER_KEY to choose your own.\n",
                key.expose()
            );
        }
        MasterKeyOrigin::Stored => {
            tracing::info!("using the master key generated on first start (its hash is stored)");
        }
        MasterKeyOrigin::Configured => {}
    }
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
