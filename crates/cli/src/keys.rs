//! `portcullis keys …`: virtual-key management from the command line, on the configured
//! database (the gateway need not be running; running replicas notice within their poll
//! interval). Prints JSON; the secret of a created or rotated key is printed once.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use portcullis_config::ProcessEnv;
use portcullis_identity::{Directory, DirectoryOptions, KeyBudget, KeyLimits, NewKey};
use portcullis_store::tenancy::{KeyFilter, KeyRecord};
use serde_json::{Value, json};

/// `keys` subcommands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a virtual key and print it (the only time it is shown).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Bind to this user (id or email).
        #[arg(long)]
        user: Option<String>,
        /// Bind to this team (account requests to it).
        #[arg(long)]
        team: Option<String>,
        /// Bind to this service account.
        #[arg(long)]
        service_account: Option<String>,
        /// Allowed models or routes, comma-separated (`openai/*` for a prefix).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Expiry, RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Spend limit in US dollars per `--budget-period`.
        #[arg(long)]
        budget_usd: Option<f64>,
        /// `daily`, `weekly` or `monthly`.
        #[arg(long, default_value = "monthly")]
        budget_period: String,
    },
    /// List keys (never their secrets).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Only keys of this user.
        #[arg(long)]
        user: Option<String>,
        /// Only keys of this team.
        #[arg(long)]
        team: Option<String>,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Issue a new secret for a key; the old one works for `--grace-seconds`.
    Rotate {
        /// Key id.
        id: String,
        /// Seconds the old secret keeps working.
        #[arg(long, default_value_t = 3600)]
        grace_seconds: i64,
    },
}

fn view(k: &KeyRecord) -> Value {
    json!({
        "id": k.id, "name": k.name, "prefix": k.prefix, "user": k.user_id, "team": k.team_id,
        "service_account": k.service_account_id,
        "models": k.models.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "expires_at": k.expires_ms, "revoked": k.revoked_ms.is_some(), "created_at": k.created_ms,
    })
}

/// Runs a `keys` subcommand.
#[allow(clippy::print_stdout)]
pub async fn run(config: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    let config = portcullis_config::load(config.as_deref(), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.issues().join("\n  ")))?;
    let stores = portcullis_store::connect(config.database.url.expose(), 2)
        .await
        .context("opening the database")?;
    let directory = Directory::new(stores.tenancy.clone(), None, DirectoryOptions::default())
        .await
        .context("reading tenancy")?;
    let out = match command {
        KeysCommand::Create {
            name,
            user,
            team,
            service_account,
            models,
            expires_at,
            rpm,
            tpm,
            budget_usd,
            budget_period,
        } => {
            let expires_ms = match expires_at {
                Some(t) => Some(
                    t.parse::<jiff::Timestamp>()
                        .map_err(|_| anyhow::anyhow!("--expires-at must be an RFC 3339 time"))?
                        .as_millisecond(),
                ),
                None => None,
            };
            let limits =
                (rpm.is_some() || tpm.is_some() || budget_usd.is_some()).then(|| KeyLimits {
                    requests_per_minute: rpm,
                    tokens_per_minute: tpm,
                    max_in_flight: None,
                    budget: budget_usd.map(|usd| KeyBudget {
                        usd,
                        period: budget_period,
                    }),
                });
            let issued = directory
                .create_key(NewKey {
                    name,
                    user,
                    team,
                    service_account,
                    models,
                    limits,
                    controls: None,
                    metadata: None,
                    expires_ms,
                    allow_custom_cost: false,
                })
                .await?;
            let mut v = view(&issued.record);
            v["key"] = json!(issued.secret.expose());
            v
        }
        KeysCommand::List { all, user, team } => {
            let keys = directory
                .store()
                .keys(&KeyFilter {
                    user_id: user,
                    team_id: team,
                    service_account_id: None,
                    include_revoked: all,
                })
                .await?;
            json!({"data": keys.iter().map(view).collect::<Vec<_>>()})
        }
        KeysCommand::Revoke { id } => {
            directory.revoke_key(&id).await?;
            json!({"id": id, "revoked": true})
        }
        KeysCommand::Rotate { id, grace_seconds } => {
            let issued = directory
                .rotate_key(&id, grace_seconds.saturating_mul(1000))
                .await?;
            let mut v = view(&issued.record);
            v["key"] = json!(issued.secret.expose());
            v
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
