//! MCP access rules added at run time: validated, stored (bumping the tenancy version so that
//! every replica's directory loads them) and read back as compiled
//! [`portcullis_policy::AccessRule`]s. They join the configuration's `mcp.access`; how rules
//! combine is `portcullis_policy::access_rules`.

use portcullis_core::AccessRole;
use portcullis_policy::{AccessRule, AccessRuleSpec, Effect, RuleIssue};
use portcullis_store::mcp_access::McpAccessRecord;

use crate::directory::Directory;
use crate::manage::{ManageError, check_id, new_id};
use crate::now_ms;

/// A rule to add.
#[derive(Debug, Clone, Default)]
pub struct NewMcpAccess {
    /// Globs over `<server>__<tool>`.
    pub tools: Vec<String>,
    /// User ids.
    pub users: Vec<String>,
    /// Team ids.
    pub teams: Vec<String>,
    /// Roles (`admin`, `member`, `viewer`).
    pub roles: Vec<String>,
    /// Allow (`true`) or deny.
    pub allow: bool,
}

/// A stored rule compiled; `None` (logged) when it no longer compiles.
pub(crate) fn compile(record: &McpAccessRecord) -> Option<AccessRule> {
    let list = |text: &str| serde_json::from_str::<Vec<String>>(text).ok();
    let spec = (|| {
        Some(AccessRuleSpec {
            id: Some(record.id.clone()),
            tools: list(&record.tools)?,
            users: list(&record.users)?,
            teams: list(&record.teams)?,
            roles: list(&record.roles)?
                .iter()
                .map(|r| AccessRole::parse(r))
                .collect::<Option<Vec<_>>>()?,
            effect: match record.effect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                _ => return None,
            },
        })
    })();
    let rule = spec.and_then(|spec| AccessRule::new(spec).ok());
    if rule.is_none() {
        tracing::error!(rule = %record.id, "a stored MCP access rule is malformed; ignoring it");
    }
    rule
}

impl Directory {
    /// Validates and stores an access rule; every replica applies it within a poll interval,
    /// this one before returning.
    pub async fn create_mcp_access(
        &self,
        new: NewMcpAccess,
    ) -> Result<McpAccessRecord, ManageError> {
        let mut roles = Vec::with_capacity(new.roles.len());
        for (i, role) in new.roles.iter().enumerate() {
            match AccessRole::parse(role) {
                Some(r) => roles.push(r),
                None => {
                    return Err(ManageError::Invalid(format!(
                        "roles[{i}]: must be `admin`, `member` or `viewer`"
                    )));
                }
            }
        }
        for user in &new.users {
            let found = self.find_user(user).await?;
            if &found.id != user {
                return Err(ManageError::Invalid(format!(
                    "name the user by id (`{}`)",
                    found.id
                )));
            }
        }
        for team in &new.teams {
            check_id("team", team)?;
            self.require_team(team).await?;
        }
        let effect = if new.allow {
            Effect::Allow
        } else {
            Effect::Deny
        };
        let spec = AccessRuleSpec {
            id: None,
            tools: new.tools,
            users: new.users,
            teams: new.teams,
            roles,
            effect,
        };
        if let Err(issues) = AccessRule::new(spec.clone()) {
            let text = issues
                .iter()
                .map(|i| match i {
                    RuleIssue::NoTools => "tools: must name at least one tool pattern".to_owned(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ManageError::Invalid(text));
        }
        let json = |list: &[String]| serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
        let role_names: Vec<String> = spec.roles.iter().map(|r| r.as_str().to_owned()).collect();
        let record = McpAccessRecord {
            id: new_id("mcpacc"),
            tools: json(&spec.tools),
            users: json(&spec.users),
            teams: json(&spec.teams),
            roles: json(&role_names),
            effect: effect.as_str().to_owned(),
            created_ms: now_ms(),
        };
        if !self.store().create_mcp_access(&record).await? {
            return Err(ManageError::Conflict(format!(
                "an access rule `{}` exists",
                record.id
            )));
        }
        self.invalidate().await?;
        Ok(record)
    }

    /// Every stored access rule, oldest first.
    pub async fn list_mcp_access(&self) -> Result<Vec<McpAccessRecord>, ManageError> {
        Ok(self.store().mcp_access().await?)
    }

    /// Deletes a stored access rule.
    pub async fn delete_mcp_access(&self, id: &str) -> Result<(), ManageError> {
        if !self.store().delete_mcp_access(id).await? {
            return Err(ManageError::NotFound(format!("no MCP access rule `{id}`")));
        }
        self.invalidate().await?;
        Ok(())
    }
}
