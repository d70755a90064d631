//! The vector index: lookup, threshold, scopes, eviction, expiry, and agreement with an
//! exhaustive exact scan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use portcullis_semantic::{
    Conflict, Embedding, IndexEntry, IndexError, ScopeHash, SemanticIndex, Signature,
};
use uuid::Uuid;

const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    fn vector(&mut self, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| self.unit()).collect()
    }
}

fn emb(v: &[f32]) -> Embedding {
    Embedding::new(v.to_vec()).unwrap()
}

fn entry(v: &[f32], answer: &str, expires_ms: i64) -> IndexEntry {
    IndexEntry {
        id: Uuid::now_v7(),
        embedding: emb(v),
        answer: Bytes::from(answer.to_owned()),
        expires_ms,
        signature: Signature::default(),
    }
}

fn scope(n: u8) -> ScopeHash {
    ScopeHash([n; 32])
}

/// `base` turned towards a random direction so its cosine with `base` is about `cos`.
fn near(rng: &mut Rng, base: &[f32], cos: f32) -> Vec<f32> {
    let base = emb(base);
    let noise = emb(&rng.vector(base.dimensions()));
    // Orthogonalize the noise against the base.
    let along = base.cosine(&noise).unwrap();
    let ortho: Vec<f32> = noise
        .values()
        .iter()
        .zip(base.values())
        .map(|(n, b)| n - along * b)
        .collect();
    let ortho = emb(&ortho);
    let sin = (1.0 - cos * cos).sqrt();
    base.values()
        .iter()
        .zip(ortho.values())
        .map(|(b, o)| cos * b + sin * o)
        .collect()
}

#[test]
fn lookup_returns_the_best_match_at_or_above_the_threshold() {
    let mut rng = Rng(1);
    let index = SemanticIndex::new(100);
    let query = rng.vector(384);
    let close = near(&mut rng, &query, 0.95);
    let closer = near(&mut rng, &query, 0.97);
    let far = near(&mut rng, &query, 0.5);
    for (v, name) in [(&close, "close"), (&closer, "closer"), (&far, "far")] {
        assert!(
            index
                .insert(scope(1), entry(v, name, NOW + HOUR), NOW)
                .unwrap()
        );
    }
    let q = emb(&query);
    let hit = index.lookup(&scope(1), &q, 0.9, NOW).unwrap();
    assert_eq!(hit.answer, "closer");
    assert!((hit.score - 0.97).abs() < 1e-4, "{}", hit.score);
    // The threshold is inclusive and decides.
    assert_eq!(
        index.lookup(&scope(1), &q, hit.score, NOW).unwrap().answer,
        "closer"
    );
    assert!(index.lookup(&scope(1), &q, 0.98, NOW).is_none());
    assert_eq!(
        index.lookup(&scope(1), &q, 0.4, NOW).unwrap().answer,
        "closer"
    );
    // An identical vector scores 1.
    let exact = index.lookup(&scope(1), &emb(&far), 0.99, NOW).unwrap();
    assert_eq!(exact.answer, "far");
    assert!((exact.score - 1.0).abs() < 1e-5);
}

#[test]
fn scopes_never_share_entries() {
    let mut rng = Rng(2);
    let index = SemanticIndex::new(100);
    let v = rng.vector(64);
    index
        .insert(scope(1), entry(&v, "one", NOW + HOUR), NOW)
        .unwrap();
    assert!(index.lookup(&scope(2), &emb(&v), 0.5, NOW).is_none());
    index
        .insert(scope(2), entry(&v, "two", NOW + HOUR), NOW)
        .unwrap();
    assert_eq!(
        index.lookup(&scope(1), &emb(&v), 0.5, NOW).unwrap().answer,
        "one"
    );
    assert_eq!(
        index.lookup(&scope(2), &emb(&v), 0.5, NOW).unwrap().answer,
        "two"
    );
    assert_eq!(index.scopes(), 2);
}

#[test]
fn a_full_index_evicts_the_oldest_entries_across_scopes() {
    let mut rng = Rng(3);
    let index = SemanticIndex::new(3);
    let vs: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(32)).collect();
    let ids: Vec<Uuid> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let e = entry(v, &i.to_string(), NOW + HOUR);
            let id = e.id;
            assert!(index.insert(scope(i as u8 % 2), e, NOW).unwrap());
            id
        })
        .collect();
    assert_eq!(index.len(), 3);
    assert_eq!(index.evicted(), 2);
    assert!(!index.contains(&ids[0]) && !index.contains(&ids[1]));
    assert!(ids[2..].iter().all(|id| index.contains(id)));
    assert!(index.lookup(&scope(0), &emb(&vs[0]), 0.99, NOW).is_none());
    assert!(index.lookup(&scope(1), &emb(&vs[1]), 0.99, NOW).is_none());
    for (i, v) in vs.iter().enumerate().skip(2) {
        let hit = index
            .lookup(&scope(i as u8 % 2), &emb(v), 0.99, NOW)
            .unwrap();
        assert_eq!(
            hit.answer,
            i.to_string(),
            "rows moved by eviction still match"
        );
    }
    // An entry already indexed is not indexed twice.
    let again = IndexEntry {
        id: ids[4],
        embedding: emb(&vs[4]),
        answer: Bytes::from_static(b"dup"),
        expires_ms: NOW + HOUR,
        signature: Signature::default(),
    };
    assert!(!index.insert(scope(0), again, NOW).unwrap());
    assert_eq!(index.len(), 3);
    assert!(
        SemanticIndex::new(0)
            .insert(scope(0), entry(&vs[0], "x", NOW + HOUR), NOW)
            .is_ok_and(|added| !added)
    );
}

#[test]
fn expired_entries_never_match_and_are_purged_lazily() {
    let mut rng = Rng(4);
    let index = SemanticIndex::new(100);
    let short = rng.vector(48);
    let long = rng.vector(48);
    index
        .insert(scope(1), entry(&short, "short", NOW + 1_000), NOW)
        .unwrap();
    index
        .insert(scope(1), entry(&long, "long", NOW + HOUR), NOW)
        .unwrap();
    assert!(
        index
            .lookup(&scope(1), &emb(&short), 0.99, NOW + 999)
            .is_some()
    );
    // Expired: no match, even before any purge, and the other entry still matches.
    assert!(
        index
            .lookup(&scope(1), &emb(&short), 0.99, NOW + 1_000)
            .is_none()
    );
    assert!(
        index
            .lookup(&scope(1), &emb(&short), -1.0, NOW + 1_000)
            .is_some_and(|h| h.answer == "long")
    );
    assert_eq!(index.len(), 2, "purged lazily, not on lookup");
    // An insert after the expiry purges it.
    index
        .insert(
            scope(2),
            entry(&rng.vector(48), "new", NOW + HOUR),
            NOW + 2_000,
        )
        .unwrap();
    assert_eq!(index.len(), 2);
    assert!(
        index
            .lookup(&scope(1), &emb(&long), 0.99, NOW + 2_000)
            .is_some()
    );
    // An entry already expired when inserted is not kept.
    assert!(
        !index
            .insert(scope(1), entry(&short, "late", NOW), NOW + 5_000)
            .unwrap()
    );
    assert_eq!(index.purge_expired(NOW + 2 * HOUR), 2);
    assert!(index.is_empty());
    assert_eq!(index.scopes(), 0);
}

#[test]
fn vectors_of_other_dimensions_are_refused_per_scope() {
    let mut rng = Rng(5);
    let index = SemanticIndex::new(10);
    index
        .insert(scope(1), entry(&rng.vector(8), "a", NOW + HOUR), NOW)
        .unwrap();
    assert_eq!(
        index.insert(scope(1), entry(&rng.vector(16), "b", NOW + HOUR), NOW),
        Err(IndexError::Dimensions {
            expected: 8,
            got: 16
        })
    );
    assert!(
        index
            .insert(scope(2), entry(&rng.vector(16), "c", NOW + HOUR), NOW)
            .unwrap()
    );
    assert!(
        index
            .lookup(&scope(1), &emb(&rng.vector(16)), -1.0, NOW)
            .is_none()
    );
}

#[test]
fn the_quantized_scan_finds_what_an_exhaustive_exact_scan_finds() {
    let mut rng = Rng(6);
    let index = SemanticIndex::new(10_000);
    let dims = 384;
    let centers: Vec<Vec<f32>> = (0..20).map(|_| rng.vector(dims)).collect();
    // Clusters of near neighbours, so many rows sit close to each threshold.
    for i in 0..4_000 {
        let center = &centers[i % centers.len()];
        let cos = 0.80 + 0.19 * ((i / centers.len()) as f32 / 200.0);
        let v = near(&mut rng, center, cos);
        let expires = if i % 7 == 0 { NOW } else { NOW + HOUR };
        index
            .insert(
                scope(0),
                entry(&v, &i.to_string(), expires.max(NOW + 1)),
                NOW,
            )
            .unwrap();
    }
    let mut hits = 0;
    for (q, center) in centers.iter().enumerate() {
        let query = emb(&near(&mut rng, center, 0.98));
        for threshold in [0.5, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99] {
            let now = NOW + (q as i64 % 2) * 10;
            let fast = index.lookup(&scope(0), &query, threshold, now);
            let exact = index.lookup_exhaustive(&scope(0), &query, threshold, now);
            assert_eq!(
                fast.as_ref().map(|m| m.id),
                exact.as_ref().map(|m| m.id),
                "threshold {threshold}"
            );
            assert_eq!(
                fast.as_ref().map(|m| m.score),
                exact.as_ref().map(|m| m.score)
            );
            hits += usize::from(fast.is_some());
        }
    }
    assert!(
        hits > 40,
        "the comparison covered hits, not only misses: {hits}"
    );
}

#[test]
fn readers_and_writers_share_the_index_across_threads() {
    let index = Arc::new(SemanticIndex::new(500));
    let writers: Vec<_> = (0..4u8)
        .map(|t| {
            let index = index.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(100 + u64::from(t));
                for i in 0..400 {
                    let v = rng.vector(64);
                    index
                        .insert(scope(t), entry(&v, &i.to_string(), NOW + HOUR), NOW)
                        .unwrap();
                    let hit = index.lookup(&scope(t), &emb(&v), 0.999, NOW);
                    // It may have been evicted by another writer since, but never mixed up.
                    if let Some(hit) = hit {
                        assert_eq!(hit.answer, i.to_string());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(index.len(), 500);
    assert_eq!(index.evicted(), 1_100);
}

#[test]
fn a_guarded_lookup_passes_over_an_entry_that_says_the_opposite() {
    let mut rng = Rng(42);
    let base = rng.vector(64);
    let index = SemanticIndex::new(10);
    let signed = |v: &[f32], answer: &str, text: &str| IndexEntry {
        signature: Signature::of(text),
        ..entry(v, answer, NOW + HOUR)
    };
    let opposite = near(&mut rng, &base, 0.95);
    let agreeing = near(&mut rng, &base, 0.90);
    let below = near(&mut rng, &base, 0.70);
    index
        .insert(
            scope(0),
            signed(&opposite, "enable", "How do I enable 2FA?"),
            NOW,
        )
        .unwrap();
    let query = emb(&base);
    let asking = Signature::of("How do I disable 2FA?");

    // Only the opposite is above the threshold: nothing, and the refusal is reported.
    let guarded = index.lookup_compatible(&scope(0), &query, &asking, 0.8, NOW);
    assert_eq!(guarded.found, None);
    let (score, why) = guarded.refused.unwrap();
    assert!(score > 0.9, "{score}");
    assert_eq!(why, Conflict::Antonym);
    assert!(
        index.lookup(&scope(0), &query, 0.8, NOW).is_some(),
        "unguarded, it would hit"
    );

    // A lower entry that agrees answers; one below the threshold never does.
    index
        .insert(
            scope(0),
            signed(&below, "below", "How do I turn off 2FA?"),
            NOW,
        )
        .unwrap();
    assert_eq!(
        index
            .lookup_compatible(&scope(0), &query, &asking, 0.8, NOW)
            .found,
        None
    );
    index
        .insert(
            scope(0),
            signed(&agreeing, "disable", "How can I turn off 2FA?"),
            NOW,
        )
        .unwrap();
    let guarded = index.lookup_compatible(&scope(0), &query, &asking, 0.8, NOW);
    assert_eq!(guarded.found.unwrap().answer, "disable");
    assert!(guarded.refused.is_some(), "the opposite scored higher");

    // A question on the same side takes the best entry, with nothing refused.
    let same_side = Signature::of("How can I turn on 2FA?");
    let guarded = index.lookup_compatible(&scope(0), &query, &same_side, 0.8, NOW);
    assert_eq!(guarded.found.unwrap().answer, "enable");
    assert_eq!(guarded.refused, None);
}
