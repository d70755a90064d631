//! Scopes: what a rule counts per (key, user, team, …), and the values a request presents.

use std::fmt;
use std::str::FromStr;

/// The dimension a rule counts along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// Every request shares one counter.
    Global,
    /// The virtual key (API key id) the request authenticated with.
    Key,
    /// The end user.
    User,
    /// The team.
    Team,
    /// The resolved model.
    Model,
    /// The provider the request is sent to.
    Provider,
    /// The route the model resolved through.
    Route,
    /// The tool being called.
    Tool,
    /// The MCP server a request is forwarded to.
    Server,
}

impl ScopeKind {
    /// Every scope kind, in configuration order.
    pub const ALL: [ScopeKind; 9] = [
        ScopeKind::Global,
        ScopeKind::Key,
        ScopeKind::User,
        ScopeKind::Team,
        ScopeKind::Model,
        ScopeKind::Provider,
        ScopeKind::Route,
        ScopeKind::Tool,
        ScopeKind::Server,
    ];

    /// The name used in configuration (`user`, `model`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Global => "global",
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
            ScopeKind::Team => "team",
            ScopeKind::Model => "model",
            ScopeKind::Provider => "provider",
            ScopeKind::Route => "route",
            ScopeKind::Tool => "tool",
            ScopeKind::Server => "server",
        }
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the scope names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope `{0}`; expected one of global, key, user, team, model, provider, route, tool, server"
)]
pub struct UnknownScope(pub String);

impl FromStr for ScopeKind {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ScopeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownScope(text.to_owned()))
    }
}

/// Who and what a request concerns: one optional value per scope kind, borrowed from the
/// request for the duration of [`crate::Limiter::admit`].
///
/// A rule whose scope has no value here does not apply to the request. Empty strings count as
/// absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subjects<'a> {
    /// Virtual key id.
    pub key: Option<&'a str>,
    /// End user.
    pub user: Option<&'a str>,
    /// Team.
    pub team: Option<&'a str>,
    /// Resolved model name.
    pub model: Option<&'a str>,
    /// Provider name.
    pub provider: Option<&'a str>,
    /// Route name.
    pub route: Option<&'a str>,
    /// Tool name.
    pub tool: Option<&'a str>,
    /// MCP server name.
    pub server: Option<&'a str>,
}

impl<'a> Subjects<'a> {
    /// The value presented for `scope`; `Some("")` for [`ScopeKind::Global`], which always
    /// applies, and `None` when the request has no (or an empty) value for it.
    pub fn value(&self, scope: ScopeKind) -> Option<&'a str> {
        let value = match scope {
            ScopeKind::Global => return Some(""),
            ScopeKind::Key => self.key,
            ScopeKind::User => self.user,
            ScopeKind::Team => self.team,
            ScopeKind::Model => self.model,
            ScopeKind::Provider => self.provider,
            ScopeKind::Route => self.route,
            ScopeKind::Tool => self.tool,
            ScopeKind::Server => self.server,
        };
        value.filter(|v| !v.is_empty())
    }
}
