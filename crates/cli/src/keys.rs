//! `portcullis keys …`: virtual-key management from the command line, on the configured
//! database (the gateway need not be running; running replicas notice within their poll
//! interval). Prints JSON; the secret of a created or rotated key is printed once.

use std::path::PathBuf;

use clap::Subcommand;
use portcullis_identity::{KeyBudget, KeyLimits, NewKey};
use portcullis_store::tenancy::KeyFilter;
use serde_json::json;

use crate::tenancy::{key_view as view, open};

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
        /// Let budgets count the prices the caller sends in `x-portcullis-custom-cost`.
        #[arg(long)]
        allow_custom_cost: bool,
        /// The key's tool lists.
        #[command(flatten)]
        tool_lists: Box<ToolLists>,
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

/// The tool-name glob lists of a key to create; globs may hold commas (`{a,b}`), so each
/// flag takes one glob and is repeated for several.
#[derive(clap::Args)]
pub struct ToolLists {
    /// Withhold calls of tools whose name matches this glob (case-sensitive; repeat for
    /// several).
    #[arg(long = "tools-denied", value_name = "GLOB")]
    tools_denied: Vec<String>,
    /// Let the key see and call only the MCP tools whose `<server>__<tool>` name matches this
    /// glob (case-sensitive; repeat for several). Without it, every tool.
    #[arg(long = "tools", value_name = "GLOB")]
    tools: Vec<String>,
}

/// Runs a `keys` subcommand.
#[allow(clippy::print_stdout)]
pub async fn run(config: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    let reads_only = matches!(command, KeysCommand::List { .. });
    let directory = open(config, !reads_only).await?;
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
            allow_custom_cost,
            tool_lists,
        } => {
            let ToolLists {
                tools_denied,
                tools,
            } = *tool_lists;
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
                    allow_custom_cost,
                    tools_denied: (!tools_denied.is_empty()).then_some(tools_denied),
                    tools: (!tools.is_empty()).then_some(tools),
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
            match directory.store().key(&id).await? {
                Some(k) => view(&k),
                None => json!({"id": id, "status": "revoked"}),
            }
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
