//! Pure policy decisions over the canonical model: no I/O, no clock, no configuration
//! loading. The gateway asks; this crate answers.
//!
//! - [`tools`]: the tool-call deny-list — glob lists over tool names ([`ToolGlobs`]), the
//!   union of a route's and a key's lists ([`DeniedTools`]), which calls of a complete answer
//!   are withheld ([`withhold_denied_calls`]) and the notice text that names them
//!   ([`withheld_notice`]).

pub mod tools;

pub use tools::{DeniedTools, GlobIssue, ToolGlobs, withheld_notice, withhold_denied_calls};
