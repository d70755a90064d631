//! Who is calling: the identity every request resolves to before it is routed.

use std::sync::Arc;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The gateway's master key.
    MasterKey,
    /// A virtual key issued by the gateway.
    VirtualKey,
    /// A JWT from a configured enterprise issuer.
    Jwt,
    /// An access token issued by the gateway's OAuth server.
    OAuth,
    /// A session of the web console (begun with a user's password or the OAuth sign-in).
    Console,
}

impl AuthMethod {
    /// The method's name as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::MasterKey => "master_key",
            AuthMethod::VirtualKey => "virtual_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::OAuth => "oauth",
            AuthMethod::Console => "console",
        }
    }
}

/// What an identity may do in the gateway, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum AccessRole {
    /// Reads logs and usage of its own teams; no model calls beyond what a key allows.
    Viewer,
    /// Calls models and tools.
    #[default]
    Member,
    /// Everything, including the admin API.
    Admin,
}

impl AccessRole {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Admin => "admin",
            AccessRole::Member => "member",
            AccessRole::Viewer => "viewer",
        }
    }

    /// Parses a role name (`admin`, `member`, `viewer`).
    pub fn parse(s: &str) -> Option<AccessRole> {
        match s {
            "admin" => Some(AccessRole::Admin),
            "member" => Some(AccessRole::Member),
            "viewer" => Some(AccessRole::Viewer),
            _ => None,
        }
    }
}

/// A resolved caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable subject: the key id, JWT `sub`, or `master`.
    pub subject: String,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The user the caller acts as, if any (a user id).
    pub user: Option<String>,
    /// The team the request is accounted to, if any (a team id).
    pub team: Option<String>,
    /// Every team the caller belongs to (includes `team`).
    pub teams: Vec<String>,
    /// The service account the caller acts as, if any.
    pub service_account: Option<String>,
    /// The virtual key used, if any.
    pub key_id: Option<String>,
    /// What the caller may do.
    pub role: AccessRole,
    /// Models and routes the caller may use; `None` means any.
    pub allowed_models: Option<Arc<[String]>>,
    /// OAuth scopes the caller was granted, when it authenticated with an access token.
    pub scopes: Option<Arc<[String]>>,
}

impl Identity {
    /// The identity of a caller holding the master key.
    pub fn master() -> Self {
        Self {
            subject: "master".to_owned(),
            method: AuthMethod::MasterKey,
            user: None,
            team: None,
            teams: Vec::new(),
            service_account: None,
            key_id: None,
            role: AccessRole::Admin,
            allowed_models: None,
            scopes: None,
        }
    }

    /// Whether the caller may use the admin API.
    pub fn is_admin(&self) -> bool {
        self.role == AccessRole::Admin
    }

    /// Whether the caller's credential carries OAuth scope `scope`; credentials without
    /// scopes (keys, enterprise tokens) are limited by role and key settings instead.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == scope))
    }

    /// Whether the caller may use `model` (a route name, an alias or `provider/model`).
    pub fn may_use_model(&self, model: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(list) => list.iter().any(|m| model_matches(m, model)),
        }
    }
}

/// Whether an allowed-model pattern admits `model`: an exact name, `*`, or a trailing-`*`
/// prefix such as `openai/*` or `gpt-4o*`.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => pattern == model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns() {
        assert!(model_matches("*", "anything"));
        assert!(model_matches("openai/*", "openai/gpt-4o"));
        assert!(!model_matches("openai/*", "anthropic/claude"));
        assert!(model_matches("gpt-4o", "gpt-4o"));
        assert!(!model_matches("gpt-4o", "gpt-4o-mini"));
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(AccessRole::Admin > AccessRole::Member && AccessRole::Member > AccessRole::Viewer);
        for r in [AccessRole::Admin, AccessRole::Member, AccessRole::Viewer] {
            assert_eq!(AccessRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(AccessRole::parse("root"), None);
    }
}
