//! The local embedder on the real all-MiniLM-L6-v2 model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use portcullis_semantic::{EmbedError, Embedder, Embedding, LocalEmbedder};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    Embedding::new(a.to_vec())
        .unwrap()
        .cosine(&Embedding::new(b.to_vec()).unwrap())
        .unwrap()
}

#[tokio::test]
async fn embeddings_match_the_reference_implementation() {
    let model = crate::common::local_embedder();
    assert_eq!(model.dimensions(), 384);
    assert_eq!(model.max_tokens(), 256);
    assert!(model.id().starts_with("local:"), "{}", model.id());

    // The first components of the sentence-transformers embeddings of the same model
    // (mean pooling, normalized), computed with its reference Python implementation.
    let cases: [(&str, [f32; 6]); 3] = [
        (
            "How do I reset my password?",
            [
                0.006903, -0.063023, -0.072044, -0.032496, -0.042709, 0.070429,
            ],
        ),
        (
            "user: How do I reset my password?",
            [
                0.02174, -0.021983, -0.066917, -0.029613, -0.090795, 0.078341,
            ],
        ),
        (
            "What is the capital of France?",
            [
                0.082048, 0.036056, -0.003893, -0.004881, 0.025651, -0.057144,
            ],
        ),
    ];
    for (text, expected) in cases {
        let v = model.embed(text).await.unwrap();
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalized: {norm}");
        for (got, want) in v.iter().zip(expected) {
            assert!(
                (got - want).abs() < 1e-3,
                "{text}: {:?} vs {expected:?}",
                &v[..6]
            );
        }
    }
}

#[tokio::test]
async fn paraphrases_score_high_and_unrelated_questions_low() {
    let model = crate::common::local_embedder();
    let reset = model.embed("How do I reset my password?").await.unwrap();
    let forgot = model
        .embed("I forgot my password, how can I change it?")
        .await
        .unwrap();
    let france = model.embed("What is the capital of France?").await.unwrap();
    let paraphrase = cosine(&reset, &forgot);
    let unrelated = cosine(&reset, &france);
    println!("paraphrase {paraphrase:.4}, unrelated {unrelated:.4}");
    assert!(paraphrase > 0.85, "{paraphrase}");
    assert!(unrelated < 0.2, "{unrelated}");
    // Same text, same vector.
    assert_eq!(
        model.embed("How do I reset my password?").await.unwrap(),
        reset
    );
}

#[tokio::test]
async fn long_input_is_truncated_keeping_its_end() {
    let model = crate::common::local_embedder();
    let question = "What is the capital of France?";
    let filler = "The weather report mentioned rain and wind along the coast. ".repeat(200);
    let long = format!("{filler}{question}");
    let other_end = format!("{filler}How do I bake sourdough bread?");
    let long = model.embed(&long).await.unwrap();
    let other_end = model.embed(&other_end).await.unwrap();
    // Far longer than 256 tokens, embedded without error; the end decides the vector.
    assert_ne!(long, other_end);
    let only_filler = model.embed(&filler).await.unwrap();
    assert!(cosine(&long, &only_filler) < 0.99);
}

#[tokio::test]
async fn the_blocking_and_async_paths_agree() {
    let model = crate::common::local_embedder();
    let text = "Can dogs eat chocolate?";
    assert_eq!(
        model.embed_blocking(text).unwrap(),
        model.embed(text).await.unwrap()
    );
    assert!(model.embed("").await.is_ok(), "empty text is [CLS][SEP]");
}

#[tokio::test]
async fn concurrent_embeddings_are_bounded_and_refused_beyond_the_queue() {
    let model = LocalEmbedder::load(crate::common::model_dir())
        .unwrap()
        .with_limits(1, 2);
    let long = "Explain the history of the printing press in detail. ".repeat(30);
    let texts: Vec<String> = (0..12).map(|i| format!("{long} ({i})")).collect();
    // Start all twelve before any can finish: each is polled once, in order.
    let mut cx = Context::from_waker(Waker::noop());
    let mut waiting = Vec::new();
    let mut busy = 0;
    for text in &texts {
        let mut embedding: Pin<Box<dyn Future<Output = _> + Send + '_>> = model.embed(text);
        match embedding.as_mut().poll(&mut cx) {
            Poll::Pending => waiting.push(embedding),
            Poll::Ready(Err(EmbedError::Busy { .. })) => busy += 1,
            Poll::Ready(other) => panic!("finished before a model could run: {other:?}"),
        }
    }
    // One running and two waiting for the slot; the other nine are refused at once.
    assert_eq!(waiting.len(), 3);
    assert_eq!(busy, 9);
    for embedding in waiting {
        assert_eq!(embedding.await.unwrap().len(), 384);
    }
    // Once the burst is over, the embedder serves again.
    assert!(model.embed("after the burst").await.is_ok());
}

#[test]
fn a_missing_or_broken_model_directory_is_a_load_error_naming_the_path() {
    let empty = tempfile::tempdir().unwrap();
    let err = LocalEmbedder::load(empty.path()).unwrap_err();
    assert!(matches!(err, EmbedError::Load { .. }));
    assert!(err.to_string().contains("config.json"), "{err}");

    let broken = tempfile::tempdir().unwrap();
    let model = crate::common::model_dir();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), broken.path().join(f)).unwrap();
    }
    std::fs::write(broken.path().join("model.safetensors"), b"not weights").unwrap();
    let err = LocalEmbedder::load(broken.path()).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
