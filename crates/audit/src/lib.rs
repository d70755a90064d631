//! The decision audit, without I/O: what one agent turn's record holds ([`record`]), how
//! records are sealed into per-writer hash chains ([`chain`]: the canonical encoding and the
//! hashes), how a stored chain is verified ([`verify`]), and the `audit:` block ([`config`]).
//! Storage and the writer are in `portcullis-store`; the gateway builds records.

pub mod chain;
pub mod config;
pub mod record;
pub mod verify;

pub use chain::{ChainError, ChainHead, Sealed};
pub use config::{AuditSettings, RawAudit};
pub use record::{
    AuditIdentity, AuditPath, AuditRecord, CallDecision, HiddenTool, TaintSource, Tokens, ToolCall,
    Trust,
};
pub use verify::{
    BadRecord, ChainInfo, ChainSummary, ChainVerifier, Checkpoint, Fault, StoredRecord,
};
