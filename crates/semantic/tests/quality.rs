//! Proof on real meaning: the labelled question pairs in `tests/data/pairs.tsv`, embedded
//! with the real model, through the whole cache path (request → text and scope → embedding
//! → index).
//!
//! One side of every pair is stored (each distinct question once, in one scope, so every
//! lookup competes against all stored questions); the other side is looked up. A hit on
//! the pair's own question is a true positive; any other hit is a false positive.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::{ChatRequest, Message, Role};
use portcullis_semantic::{CacheOptions, DEFAULT_THRESHOLD, SemanticCache, scope, semantic_text};

const SYSTEM: &str = "You are the help desk assistant of Acme Corp. Answer briefly.";
const TARGET: &str = "openai/gpt-4o-mini";
const DAY: Duration = Duration::from_secs(86_400);

struct Pair {
    same: bool,
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
            assert_eq!(cols.len(), 3, "{l}");
            Pair {
                same: match cols[0] {
                    "same" => true,
                    "different" => false,
                    other => panic!("unknown label {other}"),
                },
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

/// The best match of each incoming question at any score: (label, score, matched its own pair).
async fn best_matches(cache: &SemanticCache, pairs: &[Pair]) -> Vec<(bool, f32, bool)> {
    let mut out = Vec::new();
    for pair in pairs {
        let request = chat(SYSTEM, &pair.incoming);
        let lookup = cache
            .lookup(
                &scope(&request, "acme", TARGET),
                &semantic_text(&request),
                -1.0,
            )
            .await
            .unwrap();
        let hit = lookup.hit.expect("something is stored in the scope");
        out.push((pair.same, hit.score, hit.answer == pair.stored.as_bytes()));
    }
    out
}

fn precision_recall(matches: &[(bool, f32, bool)], threshold: f32) -> (f64, f64, usize, usize) {
    let positives = matches.iter().filter(|m| m.0).count();
    let tp = matches
        .iter()
        .filter(|(same, score, own)| *same && *own && *score >= threshold)
        .count();
    let fp = matches
        .iter()
        .filter(|(same, score, own)| *score >= threshold && !(*same && *own))
        .count();
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    (precision, tp as f64 / positives as f64, tp, fp)
}

#[tokio::test]
async fn paraphrases_hit_and_different_questions_miss_at_the_default_threshold() {
    let pairs = pairs();
    let positives = pairs.iter().filter(|p| p.same).count();
    assert!(pairs.len() >= 60 && positives >= 30 && pairs.len() - positives >= 30);

    let cache = SemanticCache::new(common::local_embedder(), None, CacheOptions::default());
    let stored: BTreeSet<&str> = pairs.iter().map(|p| p.stored.as_str()).collect();
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
    println!(
        "{} pairs ({positives} paraphrases, {} different questions), {} questions stored",
        pairs.len(),
        pairs.len() - positives,
        stored.len()
    );
    println!("threshold  precision  recall  tp  fp");
    for t in [0.70, 0.75, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92] {
        let (p, r, tp, fp) = precision_recall(&matches, t);
        println!("{t:9.2}  {p:9.3}  {r:6.3}  {tp:2}  {fp:2}");
    }
    for (label, want_same) in [("paraphrases", true), ("different questions", false)] {
        let mut scores: Vec<f32> = matches
            .iter()
            .filter(|m| m.0 == want_same)
            .map(|m| m.1)
            .collect();
        scores.sort_by(f32::total_cmp);
        let at = |q: f64| scores[((scores.len() - 1) as f64 * q).round() as usize];
        println!(
            "{label}: best-match score min {:.3}  p10 {:.3}  p25 {:.3}  median {:.3}  p75 {:.3}  p90 {:.3}  max {:.3}",
            at(0.0),
            at(0.1),
            at(0.25),
            at(0.5),
            at(0.75),
            at(0.9),
            at(1.0)
        );
    }
    for (pair, (same, score, own)) in pairs.iter().zip(&matches) {
        let hit = *score >= DEFAULT_THRESHOLD;
        if hit != (*same && *own) {
            println!(
                "  {} at {score:.3}: {:?} → {:?}{}",
                if hit { "false hit" } else { "missed" },
                pair.incoming,
                pair.stored,
                if *own {
                    ""
                } else {
                    " (matched another question)"
                }
            );
        }
    }

    let (precision, recall, _, _) = precision_recall(&matches, DEFAULT_THRESHOLD);
    println!(
        "at the default threshold {DEFAULT_THRESHOLD}: precision {precision:.3}, recall {recall:.3}"
    );
    assert!(precision >= 0.9, "precision {precision:.3}");
    assert!(recall >= 0.8, "recall {recall:.3}");
}

#[tokio::test]
async fn another_tenant_or_system_prompt_never_hits_even_for_the_identical_question() {
    let cache = SemanticCache::new(common::local_embedder(), None, CacheOptions::default());
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
