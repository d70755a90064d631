//! `portcullis users|teams|provider-keys …`: tenancy management from the command line, through
//! the same validated operations as the admin API (`portcullis_identity::Directory`), with the
//! same JSON shapes as the API answers; and the database opening every management command
//! shares ([`open`]): a command that only reads never creates a database that is not there.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use portcullis_config::ProcessEnv;
use portcullis_identity::{Directory, DirectoryOptions, NewCredential, NewUser};
use portcullis_providers::Secret;
use portcullis_store::tenancy::{
    CredentialOwner, CredentialRecord, KeyRecord, TeamRecord, UserRecord, UserUpdate,
};
use serde_json::{Value, json};

/// Opens the configured database for a management command. With `create: false` (commands
/// that only read) a SQLite file that does not exist is an error, not a new empty database.
pub async fn open(config: Option<PathBuf>, create: bool) -> anyhow::Result<Directory> {
    let config = portcullis_config::load(config.as_deref(), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.issues().join("\n  ")))?;
    if !create
        && let Some(file) = config.database.sqlite_file()
        && !file.exists()
    {
        anyhow::bail!(
            "the database {} does not exist (is PORTCULLIS_DATABASE_URL or `database.url` right? \
             `portcullis serve` creates it on first start)",
            file.display()
        );
    }
    let stores = portcullis_store::connect(config.database.url.expose(), 2)
        .await
        .context("opening the database")?;
    let vault = match &config.secret_key {
        Some(k) => Some(portcullis_identity::Vault::from_key_text(k.expose())?),
        None => None,
    };
    Directory::new(stores.tenancy.clone(), vault, DirectoryOptions::default())
        .await
        .context("reading tenancy")
}

fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

fn json_text(text: Option<&str>) -> Value {
    text.and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null)
}

/// A key as `GET /admin/keys` shows it (never its secret).
pub fn key_view(k: &KeyRecord) -> Value {
    let now = jiff::Timestamp::now().as_millisecond();
    let status = if k.revoked_ms.is_some() {
        "revoked"
    } else if k.expires_ms.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    };
    let limits: Option<portcullis_identity::KeyLimits> = k
        .limits
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok());
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "status": status,
        "user": k.user_id,
        "team": k.team_id,
        "service_account": k.service_account_id,
        "models": json_text(k.models.as_deref()),
        "limits": limits.as_ref().map(|l| json!({
            "requests_per_minute": l.requests_per_minute,
            "tokens_per_minute": l.tokens_per_minute,
            "max_in_flight": l.max_in_flight,
        })),
        "budget": limits.as_ref().and_then(|l| l.budget.as_ref()).map(|b| json!({"usd": b.usd, "period": b.period})),
        "controls": json_text(k.controls.as_deref()),
        "allow_custom_cost": k.allow_custom_cost,
        "metadata": json_text(k.metadata.as_deref()),
        "expires_at": k.expires_ms.and_then(rfc3339),
        "revoked_at": k.revoked_ms.and_then(rfc3339),
        "created_at": rfc3339(k.created_ms),
    })
}

fn user_view(u: &UserRecord, teams: &[String]) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "teams": teams,
        "issuer": u.issuer,
        "local_login": u.password_hash.is_some(),
        "disabled": u.disabled_ms.is_some(),
        "disabled_at": u.disabled_ms.and_then(rfc3339),
        "created_at": rfc3339(u.created_ms),
    })
}

fn team_view(t: &TeamRecord, members: &[String]) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "metadata": json_text(t.metadata.as_deref()),
        "created_at": rfc3339(t.created_ms),
        "members": members,
    })
}

fn credential_view(c: &CredentialRecord) -> Value {
    let owner = match CredentialOwner::parse(&c.owner_kind) {
        Some(CredentialOwner::User) => json!({"user": c.owner_id}),
        Some(CredentialOwner::Team) => json!({"team": c.owner_id}),
        _ => json!("default"),
    };
    json!({
        "id": c.id,
        "provider": c.provider,
        "alias": c.alias,
        "owner": owner,
        "hint": (!c.hint.is_empty()).then(|| format!("…{}", c.hint)),
        "created_at": rfc3339(c.created_ms),
    })
}

/// `users` subcommands.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// Email (also the id unless `--id` is given).
        #[arg(long)]
        email: Option<String>,
        /// Id.
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// `admin`, `member` (default) or `viewer`.
        #[arg(long)]
        role: Option<String>,
        /// Teams (ids), comma-separated.
        #[arg(long, value_delimiter = ',')]
        teams: Vec<String>,
        /// Read a password for the local login from this environment variable.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user (their keys stop working).
    Disable {
        /// User id or email.
        user: String,
    },
}

/// `teams` subcommands.
#[derive(Subcommand)]
pub enum TeamsCommand {
    /// Create a team.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Id (default: derived from the name).
        #[arg(long)]
        id: Option<String>,
    },
    /// List teams with their members.
    List,
    /// Add a user to a team.
    AddMember {
        /// Team id.
        team: String,
        /// User id or email.
        user: String,
    },
    /// Remove a user from a team.
    RemoveMember {
        /// Team id.
        team: String,
        /// User id or email.
        user: String,
    },
}

/// `provider-keys` subcommands.
#[derive(Subcommand)]
pub enum ProviderKeysCommand {
    /// Store a provider key, sealed with PORTCULLIS_SECRET_KEY.
    Create {
        /// Provider name, as configured.
        #[arg(long)]
        provider: String,
        /// Alias, unique per provider.
        #[arg(long)]
        alias: String,
        /// The owning user (id or email); default: the provider's default key.
        #[arg(long, conflicts_with = "team")]
        user: Option<String>,
        /// The owning team.
        #[arg(long)]
        team: Option<String>,
        /// Environment variable holding the key (keeps it out of the shell history).
        #[arg(long)]
        key_env: String,
    },
    /// List stored provider keys (never the keys themselves).
    List,
    /// Delete a stored provider key.
    Delete {
        /// Provider-key id.
        id: String,
    },
}

fn print(v: &Value) -> anyhow::Result<()> {
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

fn secret_from_env(var: &str, what: &str) -> anyhow::Result<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
        .ok_or_else(|| anyhow::anyhow!("{var} (the {what}) is not set"))
}

/// Runs a `users` subcommand.
pub async fn users(config: Option<PathBuf>, command: UsersCommand) -> anyhow::Result<()> {
    let reads_only = matches!(command, UsersCommand::List);
    let dir = open(config, !reads_only).await?;
    let out = match command {
        UsersCommand::Create {
            email,
            id,
            name,
            role,
            teams,
            password_env,
        } => {
            let role = match role.as_deref() {
                None => None,
                Some(r) => Some(
                    portcullis_core::AccessRole::parse(r)
                        .ok_or_else(|| anyhow::anyhow!("--role must be admin, member or viewer"))?,
                ),
            };
            let password = match password_env {
                Some(var) => Some(secret_from_env(&var, "password")?),
                None => None,
            };
            let user = dir
                .create_user(NewUser {
                    id,
                    email,
                    name,
                    role,
                    teams,
                    password,
                })
                .await?;
            let teams = dir.store().teams_of(&user.id).await?;
            user_view(&user, &teams)
        }
        UsersCommand::List => {
            let mut data = Vec::new();
            for u in dir.store().users().await? {
                let teams = dir.store().teams_of(&u.id).await?;
                data.push(user_view(&u, &teams));
            }
            json!({ "data": data })
        }
        UsersCommand::Disable { user } => {
            let user = dir.disable_user(&user).await?;
            let teams = dir.store().teams_of(&user.id).await?;
            user_view(&user, &teams)
        }
    };
    print(&out)
}

/// Runs a `teams` subcommand.
pub async fn teams(config: Option<PathBuf>, command: TeamsCommand) -> anyhow::Result<()> {
    let reads_only = matches!(command, TeamsCommand::List);
    let dir = open(config, !reads_only).await?;
    let out = match command {
        TeamsCommand::Create { name, id } => {
            let team = dir.create_team(id.as_deref(), &name, None).await?;
            team_view(&team, &[])
        }
        TeamsCommand::List => {
            let mut data = Vec::new();
            for t in dir.store().teams().await? {
                let members = dir.store().members_of(&t.id).await?;
                data.push(team_view(&t, &members));
            }
            json!({ "data": data })
        }
        TeamsCommand::AddMember { team, user } => {
            if dir.store().team(&team).await?.is_none() {
                anyhow::bail!("no team `{team}`");
            }
            let user = dir.find_user(&user).await?;
            let mut teams = dir.store().teams_of(&user.id).await?;
            if !teams.contains(&team) {
                teams.push(team);
            }
            let user = dir
                .update_user(&user.id, UserUpdate::default(), Some(teams.clone()))
                .await?;
            user_view(&user, &teams)
        }
        TeamsCommand::RemoveMember { team, user } => {
            let user = dir.find_user(&user).await?;
            let mut teams = dir.store().teams_of(&user.id).await?;
            if !teams.contains(&team) {
                anyhow::bail!("user `{}` is not a member of team `{team}`", user.id);
            }
            teams.retain(|t| *t != team);
            let user = dir
                .update_user(&user.id, UserUpdate::default(), Some(teams.clone()))
                .await?;
            user_view(&user, &teams)
        }
    };
    print(&out)
}

/// Runs a `provider-keys` subcommand.
pub async fn provider_keys(
    config: Option<PathBuf>,
    command: ProviderKeysCommand,
) -> anyhow::Result<()> {
    let reads_only = matches!(command, ProviderKeysCommand::List);
    let dir = open(config, !reads_only).await?;
    let out = match command {
        ProviderKeysCommand::Create {
            provider,
            alias,
            user,
            team,
            key_env,
        } => {
            let secret = secret_from_env(&key_env, "provider key")?;
            let (owner, owner_id) = match (user, team) {
                (Some(u), _) => (CredentialOwner::User, dir.find_user(&u).await?.id),
                (None, Some(t)) => (CredentialOwner::Team, t),
                (None, None) => (CredentialOwner::Default, String::new()),
            };
            let record = dir
                .create_credential(NewCredential {
                    provider,
                    alias,
                    owner,
                    owner_id,
                    secret,
                })
                .await?;
            credential_view(&record)
        }
        ProviderKeysCommand::List => {
            let data: Vec<Value> = dir
                .store()
                .credentials()
                .await?
                .iter()
                .map(credential_view)
                .collect();
            json!({ "data": data })
        }
        ProviderKeysCommand::Delete { id } => {
            dir.delete_credential(&id).await?;
            json!({"id": id, "deleted": true})
        }
    };
    print(&out)
}
