//! Semantic cache lookup latency: an index filled with 10k and then 100k random unit
//! vectors of 384 dimensions (all-MiniLM-L6-v2's size) in one scope, queried on the calling
//! thread. Random queries match nothing, so every lookup scans every entry: the worst case.
//! The exhaustive exact `f32` scan the index is checked against is measured alongside.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_semantic::{
    DEFAULT_THRESHOLD, Embedding, EntryId, IndexEntry, ScopeHash, SemanticIndex, Signature,
};

const DIMENSIONS: usize = 384;
const SIZES: [usize; 2] = [10_000, 100_000];
const LOOKUPS: usize = 400;
const EXHAUSTIVE_LOOKUPS: usize = 100;
const NOW_MS: i64 = 1_700_000_000_000;
const TTL_MS: i64 = 86_400_000;

/// A small deterministic generator (xorshift64), so every run measures the same data.
struct Xorshift(u64);

impl Xorshift {
    fn next_unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    fn embedding(&mut self) -> Embedding {
        loop {
            let values: Vec<f32> = (0..DIMENSIONS).map(|_| self.next_unit()).collect();
            if let Ok(e) = Embedding::new(values) {
                return e;
            }
        }
    }
}

/// Latency percentiles of `samples` (sorted in place).
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the measurement and renders it as a small table.
pub fn lookup_report() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "semantic cache lookup, {DIMENSIONS} dims, one scope, single thread, threshold {DEFAULT_THRESHOLD}"
    );
    let _ = writeln!(
        out,
        "{:>8}  {:>10}  {:>9}  {:>9}  {:>9}  {:>14}  {:>14}",
        "entries", "fill", "p50 ms", "p99 ms", "max ms", "exact p50 ms", "exact p99 ms"
    );
    let scope = ScopeHash([7; 32]);
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    for size in SIZES {
        let index = SemanticIndex::new(size);
        let started = Instant::now();
        for _ in 0..size {
            let entry = IndexEntry {
                id: EntryId::now_v7(),
                embedding: rng.embedding(),
                answer: Bytes::new(),
                expires_ms: NOW_MS + TTL_MS,
                signature: Signature::default(),
            };
            if index.insert(scope, entry, NOW_MS).is_err() {
                let _ = writeln!(out, "{size:>8}  insert failed");
                return out;
            }
        }
        let fill = started.elapsed();
        let queries: Vec<Embedding> = (0..LOOKUPS).map(|_| rng.embedding()).collect();

        let mut fast = Vec::with_capacity(LOOKUPS);
        let mut hits = 0usize;
        for query in &queries {
            let t = Instant::now();
            let found = black_box(index.lookup(&scope, query, DEFAULT_THRESHOLD, NOW_MS));
            fast.push(t.elapsed());
            hits += usize::from(found.is_some());
        }
        let mut exact = Vec::with_capacity(EXHAUSTIVE_LOOKUPS);
        for query in queries.iter().take(EXHAUSTIVE_LOOKUPS) {
            let t = Instant::now();
            black_box(index.lookup_exhaustive(&scope, query, DEFAULT_THRESHOLD, NOW_MS));
            exact.push(t.elapsed());
        }
        let (p50, p99, max) = percentiles(&mut fast);
        let (exact_p50, exact_p99, _) = percentiles(&mut exact);
        let _ = writeln!(
            out,
            "{size:>8}  {:>8.2} s  {:>9.3}  {:>9.3}  {:>9.3}  {:>14.3}  {:>14.3}{}",
            fill.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max),
            ms(exact_p50),
            ms(exact_p99),
            if hits > 0 {
                format!("  ({hits} random hits)")
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "lookups scan 8-bit copies and rescore candidates exactly; \"exact\" is the plain f32 scan"
    );
    out
}
