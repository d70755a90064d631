//! Chain verification: reads one chain's stored records in sequence order (as a stream, so a
//! chain of any length is verified in constant memory) and finds the first record that was
//! changed, removed or reordered.
//!
//! A chain verifies when, from its start — the genesis, or after retention the checkpoint at
//! the last record it dropped (`retained_seq`) — every stored record:
//! - has the sequence number that follows the one before it (a gap is a removed record);
//! - agrees with its own sealed body in every column the store indexes (id, chain, seq, time,
//!   session, path): a disagreement is a changed or moved (reordered) record;
//! - follows the record before it (its sealed `prev` is that record's hash);
//! - hashes to its stored hash (any other change);
//! - matches every checkpoint taken at its sequence number;
//!
//! and no checkpoint lies beyond its last record (records removed from its end).
//! A removed record is named by the `prev_id` of the record after the gap (for a gap of more
//! than one, the last record removed), or by the checkpoint that covered it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::chain::{genesis, hash_body};

/// A stored record, as verification reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The id column.
    pub id: String,
    /// The chain column.
    pub chain: String,
    /// The sequence-number column.
    pub seq: u64,
    /// The time column.
    pub ts_ms: i64,
    /// The session column.
    pub session: Option<String>,
    /// The path column.
    pub path: String,
    /// The sealed body.
    pub body: String,
    /// The stored hash.
    pub hash: String,
}

/// A checkpoint: the hash of one record of a chain, stored apart from the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain.
    pub chain: String,
    /// The record's sequence number.
    pub seq: u64,
    /// The record's id.
    pub record_id: String,
    /// The record's hash.
    pub hash: String,
    /// When the checkpoint was taken, Unix milliseconds.
    pub created_ms: i64,
}

/// A chain as registered when its writer started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// The chain's id.
    pub chain: String,
    /// The gateway process that writes it.
    pub replica: String,
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    /// The last sequence number retention dropped (0: none).
    pub retained_seq: u64,
}

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Its contents (or its place) changed.
    Changed,
    /// It was removed.
    Removed,
    /// It moved within its chain.
    Reordered,
}

impl Fault {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Changed => "changed",
            Fault::Removed => "removed",
            Fault::Reordered => "reordered",
        }
    }
}

/// The first bad record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The record's id.
    pub id: String,
    /// Its chain.
    pub chain: String,
    /// Its sequence number in the chain.
    pub seq: u64,
    /// When it (or the record after it, for a removed one) was made: orders faults across
    /// chains.
    pub ts_ms: i64,
    /// What is wrong.
    pub fault: Fault,
    /// Why, in words.
    pub reason: String,
}

/// What a verified chain held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The chain.
    pub chain: String,
    /// Records verified.
    pub records: u64,
    /// The first sequence number verified (`retained_seq + 1`).
    pub first_seq: u64,
    /// The last sequence number verified (`retained_seq` when none).
    pub last_seq: u64,
}

/// Verifies one chain, fed its records in sequence order with [`ChainVerifier::push`].
#[derive(Debug)]
pub struct ChainVerifier {
    chain: String,
    checkpoints: BTreeMap<u64, Checkpoint>,
    expected_seq: u64,
    expected_prev: Option<String>,
    prev_id: Option<String>,
    first_seq: u64,
    records: u64,
    bad: Option<BadRecord>,
}

impl ChainVerifier {
    /// Starts verifying `chain` (its registration, or for records of an unregistered chain a
    /// registration with `retained_seq` 0) with its `checkpoints`.
    pub fn new(chain: &ChainInfo, checkpoints: Vec<Checkpoint>) -> Self {
        let checkpoints: BTreeMap<u64, Checkpoint> = checkpoints
            .into_iter()
            .filter(|c| c.chain == chain.chain)
            .map(|c| (c.seq, c))
            .collect();
        let expected_prev = if chain.retained_seq == 0 {
            Some(genesis(&chain.chain))
        } else {
            checkpoints.get(&chain.retained_seq).map(|c| c.hash.clone())
        };
        let prev_id = checkpoints
            .get(&chain.retained_seq)
            .map(|c| c.record_id.clone());
        Self {
            chain: chain.chain.clone(),
            checkpoints,
            expected_seq: chain.retained_seq + 1,
            expected_prev,
            prev_id,
            first_seq: chain.retained_seq + 1,
            records: 0,
            bad: None,
        }
    }

    /// Whether a bad record was found (the rest of the chain need not be read).
    pub fn failed(&self) -> bool {
        self.bad.is_some()
    }

    /// Checks the next stored record of the chain.
    pub fn push(&mut self, r: &StoredRecord) {
        if self.bad.is_some() {
            return;
        }
        if let Err(bad) = self.check(r) {
            self.bad = Some(bad);
            return;
        }
        self.records += 1;
        self.expected_seq = r.seq + 1;
        self.expected_prev = Some(r.hash.clone());
        self.prev_id = Some(r.id.clone());
    }

    fn check(&self, r: &StoredRecord) -> Result<(), BadRecord> {
        let bad = |id: &str, seq: u64, fault: Fault, reason: String| BadRecord {
            id: id.to_owned(),
            chain: self.chain.clone(),
            seq,
            ts_ms: r.ts_ms,
            fault,
            reason,
        };
        let changed = |reason: String| bad(&r.id, r.seq, Fault::Changed, reason);
        let value: Value = serde_json::from_str(&r.body)
            .map_err(|_| changed("its sealed body is not JSON".into()))?;
        let Value::Object(map) = &value else {
            return Err(changed("its sealed body is not a JSON object".into()));
        };
        let text = |k: &str| map.get(k).and_then(Value::as_str);
        let sealed_seq = map.get("seq").and_then(Value::as_u64);
        if text("chain") != Some(self.chain.as_str()) {
            return Err(changed("it was sealed in another chain".into()));
        }
        if sealed_seq != Some(r.seq) {
            return Err(bad(
                &r.id,
                r.seq,
                Fault::Reordered,
                format!(
                    "it is stored at position {} of its chain but was sealed at {}",
                    r.seq,
                    sealed_seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
                ),
            ));
        }
        if r.seq > self.expected_seq {
            let sealed_prev_id = text("prev_id").unwrap_or_default();
            let first = self.expected_seq;
            let last = r.seq - 1;
            return Err(BadRecord {
                id: sealed_prev_id.to_owned(),
                chain: self.chain.clone(),
                seq: last,
                ts_ms: r.ts_ms,
                fault: Fault::Removed,
                reason: if first == last {
                    format!("record {first} of the chain is missing")
                } else {
                    format!("records {first} to {last} of the chain are missing (the last named)")
                },
            });
        }
        if r.seq < self.expected_seq {
            return Err(bad(
                &r.id,
                r.seq,
                Fault::Reordered,
                "it repeats a position of its chain".into(),
            ));
        }
        if text("id") != Some(r.id.as_str()) {
            return Err(changed("its id differs from the one sealed".into()));
        }
        if map.get("ts_ms").and_then(Value::as_i64) != Some(r.ts_ms) {
            return Err(changed("its time differs from the one sealed".into()));
        }
        if text("session") != r.session.as_deref() {
            return Err(changed("its session differs from the one sealed".into()));
        }
        if text("path") != Some(r.path.as_str()) {
            return Err(changed("its path differs from the one sealed".into()));
        }
        let Some(expected_prev) = &self.expected_prev else {
            return Err(bad(
                &r.id,
                r.seq,
                Fault::Removed,
                "the checkpoint the chain continues from after retention is missing".into(),
            ));
        };
        if text("prev") != Some(expected_prev.as_str())
            || text("prev_id") != self.prev_id.as_deref()
        {
            return Err(bad(
                &r.id,
                r.seq,
                Fault::Reordered,
                "it does not follow the record before it".into(),
            ));
        }
        // The stored bytes are hashed as they are: decoding and encoding again is not needed
        // (and numbers need not decode to the very same bits).
        if hash_body(&r.body) != r.hash {
            return Err(changed("its contents do not match its hash".into()));
        }
        if let Some(c) = self.checkpoints.get(&r.seq)
            && (c.hash != r.hash || c.record_id != r.id)
        {
            return Err(changed(
                "it differs from the checkpoint taken of it (its chain was rewritten)".into(),
            ));
        }
        Ok(())
    }

    /// The verdict: the chain's summary, or its first bad record.
    pub fn finish(self) -> Result<ChainSummary, BadRecord> {
        if let Some(bad) = self.bad {
            return Err(bad);
        }
        // A checkpoint past the last record: records were removed from the chain's end.
        if let Some((_, c)) = self.checkpoints.range(self.expected_seq..).next() {
            return Err(BadRecord {
                id: c.record_id.clone(),
                chain: self.chain,
                seq: c.seq,
                ts_ms: c.created_ms,
                fault: Fault::Removed,
                reason: format!(
                    "the chain ends at record {} but a checkpoint covers record {}",
                    self.expected_seq - 1,
                    c.seq
                ),
            });
        }
        Ok(ChainSummary {
            chain: self.chain,
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.expected_seq - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ChainHead, Sealed};
    use crate::record::{AuditPath, AuditRecord};
    use proptest::prelude::*;

    fn stored(s: &Sealed) -> StoredRecord {
        StoredRecord {
            id: s.id.clone(),
            chain: s.chain.clone(),
            seq: s.seq,
            ts_ms: s.ts_ms,
            session: s.session.clone(),
            path: s.path.to_owned(),
            body: s.body.clone(),
            hash: s.hash.clone(),
        }
    }

    fn chain(n: usize) -> (Vec<StoredRecord>, Vec<Checkpoint>) {
        let mut head = ChainHead::start("c");
        let mut out = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 0..n {
            let mut r = AuditRecord::new(format!("r{i}"), 1000 + i as i64, AuditPath::Mcp);
            r.session = Some(format!("s{}", i % 3));
            r.cost_usd = Some(0.1 * i as f64);
            let s = head.seal(&r).unwrap();
            head.advance(&s);
            if (i + 1) % 4 == 0 {
                checkpoints.push(Checkpoint {
                    chain: "c".into(),
                    seq: s.seq,
                    record_id: s.id.clone(),
                    hash: s.hash.clone(),
                    created_ms: 5000 + i as i64,
                });
            }
            out.push(stored(&s));
        }
        (out, checkpoints)
    }

    fn info(retained_seq: u64) -> ChainInfo {
        ChainInfo {
            chain: "c".into(),
            replica: "a".into(),
            started_ms: 0,
            retained_seq,
        }
    }

    fn verify(
        records: &[StoredRecord],
        checkpoints: &[Checkpoint],
        retained: u64,
    ) -> Result<ChainSummary, BadRecord> {
        let mut v = ChainVerifier::new(&info(retained), checkpoints.to_vec());
        for r in records {
            v.push(r);
        }
        v.finish()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (records, cps) = chain(10);
        let s = verify(&records, &cps, 0).unwrap();
        assert_eq!((s.records, s.first_seq, s.last_seq), (10, 1, 10));
        assert_eq!(verify(&[], &[], 0).unwrap().records, 0);
    }

    #[test]
    fn retention_after_a_checkpoint_still_verifies() {
        let (records, cps) = chain(10);
        let s = verify(&records[8..], &cps[1..], 8).unwrap();
        assert_eq!((s.records, s.first_seq), (2, 9));
        // Without the checkpoint it continues from, the first kept record is bad.
        let bad = verify(&records[8..], &[], 8).unwrap_err();
        assert_eq!((bad.id.as_str(), bad.fault), ("r8", Fault::Removed));
    }

    #[test]
    fn a_changed_field_is_found() {
        let (mut records, cps) = chain(6);
        records[3].body = records[3].body.replace("\"s0\"", "\"s9\"");
        let bad = verify(&records, &cps, 0).unwrap_err();
        assert_eq!((bad.id.as_str(), bad.fault), ("r3", Fault::Changed));
        let (mut records, cps) = chain(6);
        records[2].session = Some("other".into());
        assert_eq!(verify(&records, &cps, 0).unwrap_err().id, "r2");
    }

    #[test]
    fn a_removed_record_is_named() {
        let (mut records, cps) = chain(6);
        records.remove(2);
        let bad = verify(&records, &cps, 0).unwrap_err();
        assert_eq!((bad.id.as_str(), bad.fault), ("r2", Fault::Removed));
        // From the end, past a checkpoint.
        let (records, cps) = chain(8);
        let bad = verify(&records[..5], &cps, 0).unwrap_err();
        assert_eq!((bad.id.as_str(), bad.fault), ("r7", Fault::Removed));
    }

    #[test]
    fn swapped_records_are_found() {
        // Rows swapped whole, their positions kept: the first one out of place is named.
        let (mut records, cps) = chain(6);
        let (a, b) = (records[1].seq, records[2].seq);
        records.swap(1, 2);
        records[1].seq = a;
        records[2].seq = b;
        let bad = verify(&records, &cps, 0).unwrap_err();
        assert_eq!((bad.id.as_str(), bad.fault), ("r2", Fault::Reordered));
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_its_checkpoint() {
        // Record 2 changed and every hash from it on recomputed: the checkpoint at 4 differs.
        let (records, cps) = chain(6);
        let mut head = ChainHead::start("c");
        let mut forged = Vec::new();
        for (i, _) in records.iter().enumerate() {
            let mut r = AuditRecord::new(format!("r{i}"), 1000 + i as i64, AuditPath::Mcp);
            r.session = Some(format!("s{}", i % 3));
            r.cost_usd = Some(if i == 1 { 99.0 } else { 0.1 * i as f64 });
            let s = head.seal(&r).unwrap();
            head.advance(&s);
            forged.push(stored(&s));
        }
        let bad = verify(&forged, &cps, 0).unwrap_err();
        assert_eq!(bad.id, "r3");
    }

    proptest! {
        /// Any single change to a stored record's body, hash, position or removal is found,
        /// and the record named is the one touched (or, when removed, the removed one).
        #[test]
        fn any_tampering_is_found(n in 2usize..30, pick in any::<prop::sample::Index>(),
                                  how in 0u8..4, byte in any::<prop::sample::Index>()) {
            let (mut records, cps) = chain(n);
            let i = pick.index(n);
            let id = records[i].id.clone();
            match how {
                0 => {
                    let body = records[i].body.clone().into_bytes();
                    let at = byte.index(body.len());
                    let mut body = body;
                    body[at] = if body[at] == b'0' { b'1' } else { b'0' };
                    records[i].body = String::from_utf8_lossy(&body).into_owned();
                }
                1 => records[i].hash = "0".repeat(64),
                2 => {
                    // The end of a chain is covered only from its last checkpoint on.
                    if i == n - 1 && n % 4 != 0 {
                        return Ok(());
                    }
                    records.remove(i);
                }
                _ => {
                    let j = if i + 1 < n { i + 1 } else { i - 1 };
                    let (lo, hi) = (i.min(j), i.max(j));
                    let (a, b) = (records[lo].seq, records[hi].seq);
                    records.swap(lo, hi);
                    records[lo].seq = a;
                    records[hi].seq = b;
                    let named = records[lo].id.clone();
                    let bad = verify(&records, &cps, 0).unwrap_err();
                    prop_assert_eq!(bad.id, named);
                    return Ok(());
                }
            }
            let bad = verify(&records, &cps, 0).unwrap_err();
            prop_assert_eq!(bad.id, id);
        }
    }
}
