//! Pure policy decisions over the canonical model: no I/O, no clock, no configuration
//! loading. The gateway asks; this crate answers.
//!
//! - [`tools`]: the tool-call deny-list — glob lists over tool names ([`ToolGlobs`]), the
//!   union of a route's and a key's lists ([`DeniedTools`]), which calls of a complete answer
//!   are withheld ([`withhold_denied_calls`]) and the notice text that names them
//!   ([`withheld_notice`]).
//! - [`access`]: which MCP servers and tools a caller may see and call ([`ToolAccess`]).
//! - [`access_rules`]: access rules by user, team and role over MCP tools ([`AccessRules`],
//!   decided by [`access_rules::permits`]).

pub mod access;
pub mod access_rules;
pub mod tools;

pub use access::ToolAccess;
pub use access_rules::{AccessRule, AccessRuleSpec, AccessRules, Effect, RuleIssue};
pub use tools::{DeniedTools, GlobIssue, ToolGlobs, withheld_notice, withhold_denied_calls};
