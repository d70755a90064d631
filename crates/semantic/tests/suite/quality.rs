//! Proof on real meaning: the labelled question pairs in `tests/data/pairs.tsv`, embedded
//! with the real model, through the whole cache path (request → text and scope → embedding
//! and signature → index and near-opposite guard).
//!
//! One side of every pair is stored (each distinct question once, in one scope, so every
//! lookup competes against all stored questions); the other side is looked up. A hit on
//! the pair's own question is a true positive; any other hit is a false positive. Every
//! lookup is measured twice: through the guard (what the cache does) and without it (the
//! bare nearest neighbour), so the guard's effect is printed side by side.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_core::{ChatRequest, Message, Role};
use portcullis_semantic::{
    CacheOptions, Clock, DEFAULT_THRESHOLD, SemanticCache, Signature, SystemClock, scope,
    semantic_text,
};

const SYSTEM: &str = "You are the help desk assistant of Acme Corp. Answer briefly.";
const TARGET: &str = "openai/gpt-4o-mini";
const DAY: Duration = Duration::from_secs(86_400);
/// Recall of the default threshold on the paraphrases before the guard existed: the guard
/// may not cost more than that.
const RECALL_BEFORE_THE_GUARD: f64 = 0.82;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Same,
    Different,
    Opposite,
}

struct Pair {
    label: Label,
    /// For opposite pairs: negation, antonym, number, entity, class or direction.
    kind: String,
    stored: String,
    incoming: String,
}

fn pairs() -> Vec<Pair> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pairs.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let label = match cols[0] {
                "same" => Label::Same,
                "different" => Label::Different,
                "opposite" => Label::Opposite,
                other => panic!("unknown label {other}"),
            };
            let kinds = [
                "negation",
                "antonym",
                "number",
                "entity",
                "class",
                "direction",
            ];
            match label {
                Label::Opposite => assert!(cols.len() == 4 && kinds.contains(&cols[3]), "{l}"),
                _ => assert_eq!(cols.len(), 3, "{l}"),
            }
            Pair {
                label,
                kind: cols.get(3).copied().unwrap_or_default().to_owned(),
                stored: cols[1].to_owned(),
                incoming: cols[2].to_owned(),
            }
        })
        .collect()
}

fn chat(system: &str, question: &str) -> ChatRequest {
    ChatRequest {
        model: "help-desk".into(),
        messages: vec![
            Message::text(Role::System, system),
            Message::text(Role::User, question),
        ],
        max_tokens: Some(300),
        temperature: Some(0.2),
        ..ChatRequest::default()
    }
}

/// The best match of an incoming question at any score.
#[derive(Debug, Clone, Default)]
struct Best {
    score: f32,
    /// It is the pair's own stored question.
    own: bool,
    /// The stored question it is.
    question: String,
}

/// The best matches of each incoming question at any score: (through the guard, without it).
/// Through the guard there may be none: every stored question conflicts.
async fn best_matches(cache: &SemanticCache, pairs: &[Pair]) -> Vec<(Option<Best>, Best)> {
    let mut out = Vec::new();
    for pair in pairs {
        let request = chat(SYSTEM, &pair.incoming);
        let s = scope(&request, "acme", TARGET);
        let lookup = cache
            .lookup(&s, &semantic_text(&request), -1.0)
            .await
            .unwrap();
        let guarded = lookup.hit.map(|hit| Best {
            score: hit.score,
            own: hit.answer == pair.stored.as_bytes(),
            question: String::from_utf8_lossy(&hit.answer).into_owned(),
        });
        let bare = cache
            .index()
            .lookup(&s, &lookup.embedding, -1.0, SystemClock.now_ms())
            .map(|m| Best {
                score: m.score,
                own: m.answer == pair.stored.as_bytes(),
                question: String::from_utf8_lossy(&m.answer).into_owned(),
            })
            .expect("something is stored in the scope");
        out.push((guarded, bare));
    }
    out
}

/// (precision, recall, true positives, false positives) at `threshold`.
fn precision_recall(
    pairs: &[Pair],
    matches: &[Option<Best>],
    threshold: f32,
) -> (f64, f64, usize, usize) {
    let positives = pairs.iter().filter(|p| p.label == Label::Same).count();
    let (mut tp, mut fp) = (0, 0);
    for (pair, best) in pairs.iter().zip(matches) {
        match best {
            Some(b) if b.score >= threshold && pair.label == Label::Same && b.own => tp += 1,
            Some(b) if b.score >= threshold => fp += 1,
            _ => {}
        }
    }
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    (precision, tp as f64 / positives as f64, tp, fp)
}

fn hits(best: &Option<Best>) -> bool {
    best.as_ref().is_some_and(|b| b.score >= DEFAULT_THRESHOLD)
}

#[tokio::test]
async fn paraphrases_hit_and_opposites_never_do_at_the_default_threshold() {
    let pairs = pairs();
    let count = |label| pairs.iter().filter(|p| p.label == label).count();
    let (positives, different, opposite) = (
        count(Label::Same),
        count(Label::Different),
        count(Label::Opposite),
    );
    assert!(positives >= 80 && opposite >= 100 && different >= 10);

    let cache = SemanticCache::new(
        crate::common::local_embedder(),
        None,
        CacheOptions::default(),
    );
    let stored: BTreeSet<&str> = pairs.iter().map(|p| p.stored.as_str()).collect();
    for pair in &pairs {
        assert!(
            !stored.contains(pair.incoming.as_str()),
            "{:?} is stored, so it would hit itself",
            pair.incoming
        );
    }
    for question in &stored {
        let request = chat(SYSTEM, question);
        cache
            .store_text(
                scope(&request, "acme", TARGET),
                &semantic_text(&request),
                Bytes::from(question.to_string()),
                DAY,
            )
            .await
            .unwrap()
            .unwrap();
    }

    let matches = best_matches(&cache, &pairs).await;
    let guarded: Vec<Option<Best>> = matches.iter().map(|m| m.0.clone()).collect();
    let bare: Vec<Option<Best>> = matches.iter().map(|m| Some(m.1.clone())).collect();
    println!(
        "{} pairs ({positives} paraphrases, {opposite} near-opposite and {different} different \
         questions), {} questions stored",
        pairs.len(),
        stored.len()
    );
    println!("           without the guard          with the guard");
    println!("threshold  precision  recall  tp  fp  precision  recall  tp  fp");
    for t in [0.70, 0.75, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92] {
        let (p0, r0, tp0, fp0) = precision_recall(&pairs, &bare, t);
        let (p1, r1, tp1, fp1) = precision_recall(&pairs, &guarded, t);
        println!(
            "{t:9.2}  {p0:9.3}  {r0:6.3}  {tp0:2}  {fp0:2}  {p1:9.3}  {r1:6.3}  {tp1:2}  {fp1:2}"
        );
    }

    // Near-opposite pairs answered from the cache at the default threshold, by kind.
    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (pair, (with, without)) in pairs.iter().zip(&matches) {
        if pair.label == Label::Opposite {
            let entry = by_kind.entry(pair.kind.as_str()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(without.score >= DEFAULT_THRESHOLD && without.own);
            entry.2 += usize::from(hits(with) && with.as_ref().is_some_and(|b| b.own));
        }
    }
    println!(
        "near-opposite pairs answered with their opposite at {DEFAULT_THRESHOLD}: \
         kind  pairs  without  with"
    );
    for (kind, (n, without, with)) in &by_kind {
        println!("  {kind:9}  {n:3}  {without:3}  {with:3}");
    }

    // An opposite pair answered with its own stored question: what the guard exists to stop.
    let mut answered_with_the_opposite = 0;
    // An opposite pair's question answered with another stored question (a different
    // question, not an opposite: counted against precision like any false hit).
    let mut answered_otherwise = 0;
    for (pair, (with, without)) in pairs.iter().zip(&matches) {
        let hit = hits(with);
        let right = pair.label == Label::Same && with.as_ref().is_some_and(|b| b.own);
        let signature = |q: &str| Signature::of(&semantic_text(&chat(SYSTEM, q)));
        if hit && !right {
            let best = with.as_ref().unwrap();
            println!(
                "  false hit ({:?} {}) at {:.3}: {:?} → {}",
                pair.label,
                pair.kind,
                best.score,
                pair.incoming,
                if best.own {
                    format!("{:?}", pair.stored)
                } else {
                    format!("another question, {:?}", best.question)
                }
            );
            if pair.label == Label::Opposite {
                if best.own {
                    answered_with_the_opposite += 1;
                } else {
                    answered_otherwise += 1;
                }
            }
        } else if pair.label == Label::Same && !hit {
            let why = signature(&pair.stored).conflict(&signature(&pair.incoming));
            println!(
                "  missed at {:.3}{}: {:?} → {:?}",
                without.score,
                why.map(|c| format!(" (refused: {c})")).unwrap_or_default(),
                pair.incoming,
                pair.stored
            );
        }
    }

    let (precision, recall, _, _) = precision_recall(&pairs, &guarded, DEFAULT_THRESHOLD);
    let (bare_precision, bare_recall, _, _) = precision_recall(&pairs, &bare, DEFAULT_THRESHOLD);
    println!(
        "at the default threshold {DEFAULT_THRESHOLD}: precision {bare_precision:.3} → \
         {precision:.3}, recall {bare_recall:.3} → {recall:.3} (without → with the guard); \
         {} lookups refused a higher match",
        cache.stats().refused.load(Ordering::Relaxed)
    );
    println!(
        "near-opposite questions answered with their opposite: {}; with another question: \
         {answered_otherwise}",
        answered_with_the_opposite
    );
    assert_eq!(
        answered_with_the_opposite, 0,
        "near-opposite questions answered with their opposite"
    );
    assert!(recall >= RECALL_BEFORE_THE_GUARD, "recall {recall:.3}");
    assert!(precision >= 0.9, "precision {precision:.3}");
}

async fn ask(cache: &SemanticCache, question: &str) -> Option<Bytes> {
    let request = chat(SYSTEM, question);
    cache
        .lookup(
            &scope(&request, "acme", TARGET),
            &semantic_text(&request),
            DEFAULT_THRESHOLD,
        )
        .await
        .unwrap()
        .hit
        .map(|h| h.answer)
}

async fn remember(cache: &SemanticCache, question: &str, answer: &'static str) {
    let request = chat(SYSTEM, question);
    cache
        .store_text(
            scope(&request, "acme", TARGET),
            &semantic_text(&request),
            Bytes::from_static(answer.as_bytes()),
            DAY,
        )
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_refused_match_leaves_the_way_to_a_compatible_one() {
    let cache = SemanticCache::new(
        crate::common::local_embedder(),
        None,
        CacheOptions::default(),
    );
    let refused = || cache.stats().refused.load(Ordering::Relaxed);
    remember(
        &cache,
        "How do I enable two-factor authentication?",
        "enable",
    )
    .await;

    // Only the opposite is stored: a miss, counted as a refusal.
    assert_eq!(
        ask(&cache, "How do I disable two-factor authentication?").await,
        None
    );
    assert_eq!(refused(), 1);
    assert_eq!(
        ask(&cache, "How do I enable two factor authentication?").await,
        Some(Bytes::from_static(b"enable"))
    );
    assert_eq!(refused(), 1);

    // Once the right answer is stored too, it answers, though the opposite scores higher.
    remember(
        &cache,
        "How do I turn off two-factor authentication?",
        "disable",
    )
    .await;
    assert_eq!(
        ask(&cache, "How do I disable two-factor authentication?").await,
        Some(Bytes::from_static(b"disable"))
    );
}

#[tokio::test]
async fn signatures_are_cheap() {
    let pairs = pairs();
    let texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| [&p.stored, &p.incoming])
        .map(|q| semantic_text(&chat(SYSTEM, q)))
        .collect();
    let started = Instant::now();
    let signatures: Vec<Signature> = texts.iter().map(|t| Signature::of(t)).collect();
    let per_text = started.elapsed() / texts.len() as u32;
    let started = Instant::now();
    let mut conflicts = 0;
    for a in &signatures {
        for b in &signatures {
            conflicts += usize::from(a.conflict(b).is_some());
        }
    }
    let per_comparison = started.elapsed() / (signatures.len() * signatures.len()) as u32;
    println!(
        "signature: {per_text:?} per text, {per_comparison:?} per comparison \
         ({conflicts} conflicts among {} texts)",
        texts.len()
    );
    // Generous bounds for an unoptimised build on a loaded machine: the point is that
    // the guard is noise next to embedding a text (milliseconds).
    assert!(per_text < Duration::from_millis(2), "{per_text:?}");
    assert!(
        per_comparison < Duration::from_micros(50),
        "{per_comparison:?}"
    );
}

#[tokio::test]
async fn another_tenant_or_system_prompt_never_hits_even_for_the_identical_question() {
    let cache = SemanticCache::new(
        crate::common::local_embedder(),
        None,
        CacheOptions::default(),
    );
    let question = "How do I reset my password?";
    let original = chat(SYSTEM, question);
    let s = scope(&original, "acme", TARGET);
    cache
        .store_text(
            s,
            &semantic_text(&original),
            Bytes::from_static(b"acme answer"),
            DAY,
        )
        .await
        .unwrap()
        .unwrap();

    let hit = cache
        .lookup(&s, &semantic_text(&original), DEFAULT_THRESHOLD)
        .await
        .unwrap()
        .hit
        .unwrap();
    assert!(hit.score > 0.999, "{}", hit.score);

    let other_prompt = chat("You are a pirate. Answer in pirate speak.", question);
    let mut other_settings = original.clone();
    other_settings.temperature = Some(1.0);
    let scopes = [
        scope(&original, "globex", TARGET),
        scope(&other_prompt, "acme", TARGET),
        scope(&original, "acme", "anthropic/claude-haiku-4-5"),
        scope(&other_settings, "acme", TARGET),
    ];
    for other in scopes {
        assert_ne!(other, s);
        // Even at the lowest possible threshold nothing is found: the scope has no entries.
        let lookup = cache
            .lookup(&other, &semantic_text(&original), -1.0)
            .await
            .unwrap();
        assert!(lookup.hit.is_none());
    }
}
