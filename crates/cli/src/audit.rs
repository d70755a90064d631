//! `portcullis audit verify`: checks every decision-audit chain in the configured database
//! (the same `PORTCULLIS_DATABASE_URL` / `PORTCULLIS_CONFIG` resolution as `serve`; the
//! gateway may be running). Exit status 0 when every chain is intact; otherwise 1, with
//! `first bad record: <id>` (the id `GET /admin/audit` shows; for a removed record, the id it
//! had) and a line per broken chain. Other failures (no database) exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use portcullis_config::ProcessEnv;

/// `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify that no stored audit record was changed, removed or reordered.
    Verify,
}

/// Runs an `audit` subcommand.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(config: Option<PathBuf>, command: &AuditCommand) -> ExitCode {
    let AuditCommand::Verify = command;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(verify(config)) {
        Ok(report) => match report.first_bad() {
            None => {
                let records: u64 = report.intact.iter().map(|c| c.records).sum();
                println!(
                    "audit intact: {} chain(s), {records} record(s) verified",
                    report.intact.len()
                );
                ExitCode::SUCCESS
            }
            Some(first) => {
                println!("first bad record: {}", first.id);
                for bad in &report.bad {
                    println!(
                        "  chain {} record {} ({}): {} — {}",
                        bad.chain,
                        bad.seq,
                        bad.id,
                        bad.fault.as_str(),
                        bad.reason
                    );
                }
                println!(
                    "{} chain(s) broken, {} intact",
                    report.bad.len(),
                    report.intact.len()
                );
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn verify(config: Option<PathBuf>) -> anyhow::Result<portcullis_store::AuditVerification> {
    let config = portcullis_config::load(config.as_deref(), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.issues().join("\n  ")))?;
    if let Some(file) = config.database.sqlite_file()
        && !file.exists()
    {
        anyhow::bail!(
            "the database {} does not exist (is PORTCULLIS_DATABASE_URL or `database.url` right?)",
            file.display()
        );
    }
    let stores = portcullis_store::connect(config.database.url.expose(), 2)
        .await
        .context("opening the database")?;
    portcullis_store::verify_audit(stores.audit.as_ref())
        .await
        .context("reading the audit")
}
