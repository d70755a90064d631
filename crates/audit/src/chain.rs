//! The hash chain: how a record is sealed into its chain, and the canonical encoding hashed.
//!
//! Each writer (one per gateway process) keeps its own chain, named by a fresh id when it
//! starts, so replicas writing at once never need a common order. The record at sequence
//! number `n` of chain `c` is sealed as the record's JSON object with four more members:
//!
//! - `chain`: `c`;
//! - `seq`: `n` (1 for the first record of a chain);
//! - `prev`: the hash of record `n - 1`, or for `n = 1` the chain's genesis,
//!   `hex(SHA-256("portcullis-audit-genesis\n" || c))`;
//! - `prev_id`: the id of record `n - 1` (absent for `n = 1`), so a removed record can be named.
//!
//! Its **body** is the canonical encoding of that object, and its **hash** is
//! `hex(SHA-256("portcullis-audit-v1\n" || body))` (lowercase hex). The canonical encoding is
//! JSON without insignificant whitespace, object members sorted by the bytes of their names,
//! strings escaped minimally (`"`, `\`, and control characters; `\n`, `\r`, `\t`, `\b`, `\f`
//! short, the others `\u00XX`), numbers as their shortest round-tripping form; members whose
//! value is absent are left out. The body is stored as it was hashed, and verification hashes
//! the stored bytes (decoding them only to compare the members it checks).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::AuditRecord;

/// What the hash of a sealed record is computed over, before its body.
pub const HASH_DOMAIN: &[u8] = b"portcullis-audit-v1\n";
/// What a chain's genesis hash is computed over, before the chain's id.
pub const GENESIS_DOMAIN: &[u8] = b"portcullis-audit-genesis\n";

/// A failure to seal a record.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The record has no JSON form.
    #[error("the audit record cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The record's JSON form is not an object.
    #[error("the audit record is not a JSON object")]
    NotAnObject,
}

/// The hash a chain's first record follows.
pub fn genesis(chain: &str) -> String {
    let mut h = Sha256::new();
    h.update(GENESIS_DOMAIN);
    h.update(chain.as_bytes());
    hex::encode(h.finalize())
}

/// The hash of a sealed record's body.
pub fn hash_body(body: &str) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// The canonical encoding of `value` (see the module documentation).
pub fn canonical(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // Numbers, booleans and null print the same way whatever the map type.
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A record sealed into its chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record's id.
    pub id: String,
    /// Its chain.
    pub chain: String,
    /// Its sequence number in the chain (from 1).
    pub seq: u64,
    /// When the turn ended, Unix milliseconds.
    pub ts_ms: i64,
    /// Its session.
    pub session: Option<String>,
    /// `llm` or `mcp`.
    pub path: &'static str,
    /// The canonical encoding hashed.
    pub body: String,
    /// Its hash.
    pub hash: String,
}

/// The last record of a chain: what the next one is sealed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: String,
    /// The last sequence number sealed (0 before the first record).
    pub seq: u64,
    /// The last record's hash (the genesis before the first record).
    pub hash: String,
    /// The last record's id.
    pub id: Option<String>,
}

impl ChainHead {
    /// A new chain named `chain`.
    pub fn start(chain: impl Into<String>) -> Self {
        let chain = chain.into();
        Self {
            hash: genesis(&chain),
            chain,
            seq: 0,
            id: None,
        }
    }

    /// Seals `record` as the next record of the chain; the head moves only with
    /// [`ChainHead::advance`], once the record is stored.
    pub fn seal(&self, record: &AuditRecord) -> Result<Sealed, ChainError> {
        let mut value = serde_json::to_value(record)?;
        let Value::Object(map) = &mut value else {
            return Err(ChainError::NotAnObject);
        };
        let seq = self.seq + 1;
        map.insert("chain".into(), Value::String(self.chain.clone()));
        map.insert("seq".into(), Value::from(seq));
        map.insert("prev".into(), Value::String(self.hash.clone()));
        if let Some(id) = &self.id {
            map.insert("prev_id".into(), Value::String(id.clone()));
        }
        let body = canonical(&value);
        Ok(Sealed {
            id: record.id.clone(),
            chain: self.chain.clone(),
            seq,
            ts_ms: record.ts_ms,
            session: record.session.clone(),
            path: record.path.as_str(),
            hash: hash_body(&body),
            body,
        })
    }

    /// Moves the head past `sealed`, which was sealed by [`ChainHead::seal`] on this head.
    pub fn advance(&mut self, sealed: &Sealed) {
        self.seq = sealed.seq;
        self.hash.clone_from(&sealed.hash);
        self.id = Some(sealed.id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AuditPath;

    #[test]
    fn canonical_sorts_members_and_round_trips() {
        let v: Value = serde_json::from_str(
            r#"{"b": [1, 2.5, "x\n\u0001"], "a": {"z": null, "é": true}, "A": -3}"#,
        )
        .unwrap_or_default();
        let c = canonical(&v);
        assert_eq!(
            c,
            r#"{"A":-3,"a":{"z":null,"é":true},"b":[1,2.5,"x\n\u0001"]}"#
        );
        let again: Value = serde_json::from_str(&c).unwrap_or_default();
        assert_eq!(canonical(&again), c);
    }

    #[test]
    fn seal_links_records_and_starts_at_the_genesis() {
        let mut head = ChainHead::start("c1");
        let a = head
            .seal(&AuditRecord::new("r1", 1, AuditPath::Mcp))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.seq, 1);
        assert!(a.body.contains(&format!("\"prev\":\"{}\"", genesis("c1"))));
        assert!(!a.body.contains("prev_id"));
        head.advance(&a);
        let b = head
            .seal(&AuditRecord::new("r2", 2, AuditPath::Mcp))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.seq, 2);
        assert!(b.body.contains(&format!("\"prev\":\"{}\"", a.hash)));
        assert!(b.body.contains("\"prev_id\":\"r1\""));
        assert_eq!(b.hash, hash_body(&b.body));
        assert_ne!(genesis("c1"), genesis("c2"));
    }
}
