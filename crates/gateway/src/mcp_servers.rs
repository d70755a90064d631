//! The MCP servers added through the admin API, between their stored form and the hub's specs.
//!
//! An entry has the shape of the file's `mcp.servers.<name>` and is validated by the same code
//! (`portcullis_mcp::config::validate_entry`). It is stored (`portcullis_store::mcp`) as JSON
//! without the values of `env`, `headers` and `oauth.client_secret`; those are sealed together by the vault, bound to
//! the server's name, so the database never holds them in clear. Without a vault, an entry with
//! such values is refused ([`EncodeError::NoVault`]) rather than stored in clear. Every replica
//! reads the rows back into `ServerSpec`s ([`load`]) whenever the tenancy version moves.

use std::collections::BTreeMap;

use portcullis_identity::{Vault, VaultError};
use portcullis_mcp::config::{McpConfig, RawServer, ServerSpec};
use portcullis_providers::Secret;
use portcullis_store::{McpServerRecord, McpServerStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the vault binds a server's sealed values to: copied onto another row, they do not open.
fn seal_id(name: &str) -> String {
    format!("mcp-server:{name}")
}

/// The secret parts of an entry, sealed as one JSON object. Deliberately not `Debug`.
#[derive(Default, Serialize, Deserialize)]
struct Secrets {
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `oauth.client_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oauth_client_secret: Option<String>,
}

/// Why an entry could not be put in its stored form.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// It has `env` or `headers` values and no secret key is configured to seal them.
    #[error(
        "Storing `env`, `headers` or `oauth.client_secret` values needs a secret key (PORTCULLIS_SECRET_KEY or \
         `secret_key`) to seal them; none is configured"
    )]
    NoVault,
    /// The vault failed.
    #[error("sealing failed: {0}")]
    Vault(#[from] VaultError),
    /// The entry could not be written as JSON.
    #[error("encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why a stored entry could not be read back.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("its stored entry is not readable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("its sealed values need PORTCULLIS_SECRET_KEY, which is not configured")]
    NoVault,
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("it is not valid here: {0}")]
    Invalid(String),
}

/// The stored form of the entry `entry` (the request's object, whose `name`, `env` and
/// `headers` are left out of the stored JSON), already validated as `raw`.
pub fn encode(
    name: &str,
    mut entry: Map<String, Value>,
    raw: &RawServer,
    vault: Option<&Vault>,
    now_ms: i64,
) -> Result<McpServerRecord, EncodeError> {
    for field in ["name", "env", "headers"] {
        entry.remove(field);
    }
    if let Some(Value::Object(oauth)) = entry.get_mut("oauth") {
        oauth.remove("client_secret");
    }
    let client_secret = raw.oauth.as_ref().and_then(|o| o.client_secret.clone());
    let sealed = if raw.env.is_empty() && raw.headers.is_empty() && client_secret.is_none() {
        None
    } else {
        let vault = vault.ok_or(EncodeError::NoVault)?;
        let secrets = Secrets {
            env: raw.env.clone(),
            headers: raw.headers.clone(),
            oauth_client_secret: client_secret,
        };
        let text = Secret::new(serde_json::to_string(&secrets)?);
        Some(vault.seal(&seal_id(name), &text)?)
    };
    Ok(McpServerRecord {
        name: name.to_owned(),
        config: Value::Object(entry).to_string(),
        sealed,
        created_ms: now_ms,
        updated_ms: now_ms,
    })
}

/// The spec of a stored server, validated under `block` (the file's `mcp:` block, whose
/// defaults apply to what the entry leaves out).
fn decode(
    record: &McpServerRecord,
    vault: Option<&Vault>,
    block: &McpConfig,
) -> Result<ServerSpec, DecodeError> {
    let mut raw: RawServer = serde_json::from_str(&record.config)?;
    if let Some(sealed) = &record.sealed {
        let vault = vault.ok_or(DecodeError::NoVault)?;
        let text = vault.open(&seal_id(&record.name), sealed)?;
        let secrets: Secrets = serde_json::from_str(text.expose())?;
        raw.env = secrets.env;
        raw.headers = secrets.headers;
        if let (Some(oauth), Some(secret)) = (raw.oauth.as_mut(), secrets.oauth_client_secret) {
            oauth.client_secret = Some(secret);
        }
    }
    portcullis_mcp::config::validate_entry(&record.name, raw, "", block).map_err(|issues| {
        DecodeError::Invalid(
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Every stored server as a spec, under `block`'s defaults. A row that cannot be read back
/// (sealed under another key, no longer valid) is left out and logged; it never hides the
/// others.
pub async fn load(
    store: &dyn McpServerStore,
    vault: Option<&Vault>,
    block: &McpConfig,
) -> Result<Vec<ServerSpec>, StoreError> {
    let records = store.mcp_servers().await?;
    let mut specs = Vec::with_capacity(records.len());
    for record in &records {
        match decode(record, vault, block) {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                tracing::error!(server = %record.name, error = %e, "an MCP server added through the admin API is left out");
            }
        }
    }
    Ok(specs)
}

/// The servers the hub runs: the file's, then the stored ones whose names the file does not
/// use (the file wins a name both claim, and the stored one is logged as shadowed).
pub fn merged(block: &McpConfig, admin: &[ServerSpec]) -> McpConfig {
    let mut merged = block.clone();
    for spec in admin {
        if block.server(&spec.name).is_some() {
            tracing::warn!(server = %spec.name, "an MCP server added through the admin API has the name of one in the configuration file, which wins");
            continue;
        }
        merged.servers.push(spec.clone());
    }
    merged.servers.sort_by(|a, b| a.name.cmp(&b.name));
    merged
}
