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
use portcullis_store::tenancy::{CredentialOwner, TeamRecord, UserUpdate};
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

pub use portcullis_gateway::tenancy::key_view;
use portcullis_gateway::tenancy::{credential_view, user_view};

fn team_view(t: &TeamRecord, members: &[String]) -> Value {
    portcullis_gateway::tenancy::team_view(t, Some(members))
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
