//! Users' and teams' own credentials for MCP servers: headers for HTTP servers, environment
//! variables for stdio servers. Stored sealed under `PORTCULLIS_SECRET_KEY` (the whole
//! name → value object is one sealed secret), opened into the directory snapshot, and resolved
//! per caller: the user's own credential, else their team's (the team the request is
//! accounted to first, then their other teams in order), else none — the server's configured
//! headers or environment alone. A credential belongs to exactly one user or one team.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portcullis_core::Identity;
use portcullis_providers::Secret;
use portcullis_store::StoreError;
use portcullis_store::TenancyStore;
use portcullis_store::mcp_access::McpCredentialRecord;

use crate::directory::Directory;
use crate::manage::{ManageError, check_id, new_id};
use crate::now_ms;
use crate::vault::Vault;

/// What a credential sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpSecretKind {
    /// HTTP headers (Streamable HTTP and SSE servers).
    Headers,
    /// Environment variables (stdio servers).
    Env,
}

impl McpSecretKind {
    /// `headers` or `env`.
    pub fn as_str(self) -> &'static str {
        match self {
            McpSecretKind::Headers => "headers",
            McpSecretKind::Env => "env",
        }
    }

    fn parse(text: &str) -> Option<McpSecretKind> {
        match text {
            "headers" => Some(McpSecretKind::Headers),
            "env" => Some(McpSecretKind::Env),
            _ => None,
        }
    }
}

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpCredentialOwner {
    /// A user, by id.
    User(String),
    /// A team, by id.
    Team(String),
}

impl McpCredentialOwner {
    /// What the owner's credential for a server is for, as a pin scope: `user:<id>` or
    /// `team:<id>`. It stays as the credential is replaced (rotated), unlike its id.
    pub fn scope(&self) -> String {
        match self {
            McpCredentialOwner::User(id) => format!("user:{id}"),
            McpCredentialOwner::Team(id) => format!("team:{id}"),
        }
    }
}

/// An opened credential: what one user's or team's upstream instance gets.
#[derive(Clone)]
pub struct McpCredentialSet {
    /// The stored credential's id: the upstream instance it gets is keyed by it.
    pub id: Arc<str>,
    /// Its owner's scope ([`McpCredentialOwner::scope`]): its instance's tools are pinned
    /// there, so a rotated credential keeps its owner's pins.
    pub scope: Arc<str>,
    /// Headers or environment.
    pub kind: McpSecretKind,
    /// Names to values (values are secrets).
    pub values: BTreeMap<String, String>,
}

impl std::fmt::Debug for McpCredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpCredentialSet")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("kind", &self.kind)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The opened credentials of a snapshot, by server.
#[derive(Debug, Default)]
pub(crate) struct McpCredentialIndex {
    by_server: HashMap<String, Vec<(McpCredentialOwner, Arc<McpCredentialSet>)>>,
}

impl McpCredentialIndex {
    /// Reads and opens every stored credential (none without a vault).
    pub(crate) async fn load(
        store: &dyn TenancyStore,
        vault: Option<&Vault>,
    ) -> Result<McpCredentialIndex, StoreError> {
        let mut index = McpCredentialIndex::default();
        let Some(vault) = vault else {
            return Ok(index);
        };
        for record in store.mcp_credentials().await? {
            let owner = match record.owner_kind.as_str() {
                "user" => McpCredentialOwner::User(record.owner_id.clone()),
                "team" => McpCredentialOwner::Team(record.owner_id.clone()),
                _ => continue,
            };
            let opened = vault
                .open(&record.id, &record.sealed)
                .ok()
                .and_then(|s| serde_json::from_str::<BTreeMap<String, String>>(s.expose()).ok());
            let (Some(values), Some(kind)) = (opened, McpSecretKind::parse(&record.kind)) else {
                tracing::error!(credential = %record.id, "a stored MCP credential cannot be opened with PORTCULLIS_SECRET_KEY; skipping it");
                continue;
            };
            let scope = Arc::from(owner.scope());
            index.by_server.entry(record.server).or_default().push((
                owner,
                Arc::new(McpCredentialSet {
                    scope,
                    id: Arc::from(record.id),
                    kind,
                    values,
                }),
            ));
        }
        Ok(index)
    }

    /// The credential `who` uses for `server` (see the module documentation).
    pub(crate) fn resolve(&self, who: &Identity, server: &str) -> Option<Arc<McpCredentialSet>> {
        let list = self.by_server.get(server)?;
        let find = |owner: &McpCredentialOwner| {
            list.iter()
                .find(|(o, _)| o == owner)
                .map(|(_, c)| c.clone())
        };
        if let Some(user) = &who.user
            && let Some(c) = find(&McpCredentialOwner::User(user.clone()))
        {
            return Some(c);
        }
        who.team
            .iter()
            .chain(who.teams.iter())
            .find_map(|t| find(&McpCredentialOwner::Team(t.clone())))
    }
}

/// A credential to store.
#[derive(Debug, Clone)]
pub struct NewMcpCredential {
    /// The MCP server's name.
    pub server: String,
    /// Its owner.
    pub owner: McpCredentialOwner,
    /// Headers or environment.
    pub kind: McpSecretKind,
    /// Names to values.
    pub values: BTreeMap<String, String>,
}

impl Directory {
    /// Seals and stores a credential, replacing the owner's previous one for the server.
    pub async fn put_mcp_credential(
        &self,
        new: NewMcpCredential,
    ) -> Result<McpCredentialRecord, ManageError> {
        let vault = self.vault().ok_or(ManageError::NoVault)?;
        if new.values.is_empty() {
            return Err(ManageError::Invalid(format!(
                "`{}` must name at least one value",
                new.kind.as_str()
            )));
        }
        let (owner_kind, owner_id) = match &new.owner {
            McpCredentialOwner::User(id) => {
                let user = self.find_user(id).await?;
                if &user.id != id {
                    return Err(ManageError::Invalid(format!(
                        "name the user by id (`{}`)",
                        user.id
                    )));
                }
                ("user", id.clone())
            }
            McpCredentialOwner::Team(id) => {
                check_id("team", id)?;
                self.require_team(id).await?;
                ("team", id.clone())
            }
        };
        let id = new_id("mcpcred");
        let text = serde_json::to_string(&new.values)
            .map_err(|e| ManageError::Invalid(format!("cannot encode the values: {e}")))?;
        let sealed = vault
            .seal(&id, &Secret::new(text))
            .map_err(|e| ManageError::Invalid(e.to_string()))?;
        let names: Vec<&String> = new.values.keys().collect();
        let record = McpCredentialRecord {
            id,
            server: new.server,
            owner_kind: owner_kind.to_owned(),
            owner_id,
            kind: new.kind.as_str().to_owned(),
            sealed,
            names: serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
            created_ms: now_ms(),
        };
        self.store().put_mcp_credential(&record).await?;
        self.invalidate().await?;
        Ok(record)
    }

    /// The stored credentials of `server` (sealed values never leave the store's record).
    pub async fn list_mcp_credentials(
        &self,
        server: &str,
    ) -> Result<Vec<McpCredentialRecord>, ManageError> {
        Ok(self
            .store()
            .mcp_credentials()
            .await?
            .into_iter()
            .filter(|c| c.server == server)
            .collect())
    }

    /// Deletes one of `server`'s credentials.
    pub async fn delete_mcp_credential(&self, server: &str, id: &str) -> Result<(), ManageError> {
        if !self.store().delete_mcp_credential(server, id).await? {
            return Err(ManageError::NotFound(format!(
                "no credential `{id}` for MCP server `{server}`"
            )));
        }
        self.invalidate().await?;
        Ok(())
    }
}
