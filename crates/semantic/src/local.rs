//! [`LocalEmbedder`]: a BERT-family sentence-embedding model (for example all-MiniLM-L6-v2)
//! run on the CPU with candle, from a directory holding `config.json`, `tokenizer.json` and
//! `model.safetensors` (plus, optionally, the sentence-transformers files
//! `sentence_bert_config.json` and `1_Pooling/config.json`). Nothing is ever downloaded.
//!
//! The embedding is the mean of the last hidden states over the attention mask (or the
//! `[CLS]` state when the pooling configuration asks for it), L2-normalized. Input longer
//! than the model's maximum length is truncated *from the start*: the newest turn of a
//! conversation decides its answer, so it is what is kept.
//!
//! Inference runs on Tokio's blocking threads, at most `concurrency` at a time; requests
//! beyond that wait without blocking the executor, and beyond `max_waiting` they are refused
//! with [`EmbedError::Busy`] so that a burst makes the cache step aside rather than queue.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tokio::sync::Semaphore;

use crate::embedder::{EmbedError, Embedder};

/// Files a model directory must hold.
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";
/// Optional sentence-transformers files.
const SENTENCE_CONFIG_FILE: &str = "sentence_bert_config.json";
const POOLING_CONFIG_FILE: &str = "1_Pooling/config.json";

/// Requests allowed to wait for an inference slot, per slot, before [`EmbedError::Busy`].
const WAITING_PER_SLOT: usize = 64;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// Mean over the attention mask.
    Mean,
    /// The state of the first (`[CLS]`) token.
    Cls,
}

/// The relevant keys of `sentence_bert_config.json`.
#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// The relevant keys of `1_Pooling/config.json`.
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// The loaded model and tokenizer; shared with the blocking threads.
struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    device: Device,
}

/// A sentence-embedding model loaded from a local directory.
pub struct LocalEmbedder {
    id: String,
    dir: PathBuf,
    dimensions: usize,
    max_tokens: usize,
    model: Arc<Model>,
    slots: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the model in `dir`. Reads the whole weights file (about 90 MB for
    /// all-MiniLM-L6-v2) and hashes it, so call it at startup or on a blocking thread.
    ///
    /// Inference concurrency defaults to the number of CPUs.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        let load_error = |path: &Path, message: String| EmbedError::Load {
            path: path.to_owned(),
            message,
        };
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| load_error(&path, e.to_string()))
        };

        let config_bytes = read(CONFIG_FILE)?;
        let config: BertConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            load_error(
                &dir.join(CONFIG_FILE),
                format!("not a BERT configuration: {e}"),
            )
        })?;
        let tokenizer_bytes = read(TOKENIZER_FILE)?;
        let weights = read(WEIGHTS_FILE)?;

        let max_tokens = match read_optional(dir, SENTENCE_CONFIG_FILE)? {
            Some(bytes) => serde_json::from_slice::<SentenceConfig>(&bytes)
                .map_err(|e| load_error(&dir.join(SENTENCE_CONFIG_FILE), e.to_string()))?
                .max_seq_length
                .unwrap_or(config.max_position_embeddings),
            None => config.max_position_embeddings,
        }
        .min(config.max_position_embeddings);
        if max_tokens < 2 {
            return Err(load_error(
                dir,
                format!("maximum sequence length {max_tokens} is too short"),
            ));
        }
        let pooling = match read_optional(dir, POOLING_CONFIG_FILE)? {
            None => Pooling::Mean,
            Some(bytes) => {
                let p: PoolingConfig = serde_json::from_slice(&bytes)
                    .map_err(|e| load_error(&dir.join(POOLING_CONFIG_FILE), e.to_string()))?;
                match (
                    p.pooling_mode_mean_tokens,
                    p.pooling_mode_cls_token,
                    p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens,
                ) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    _ => {
                        return Err(load_error(
                            &dir.join(POOLING_CONFIG_FILE),
                            "only mean or CLS pooling is supported".to_owned(),
                        ));
                    }
                }
            }
        };

        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| load_error(&dir.join(TOKENIZER_FILE), e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Left,
            }))
            .map_err(|e| load_error(&dir.join(TOKENIZER_FILE), e.to_string()))?;
        tokenizer.with_padding(None);

        let mut digest = Sha256::new();
        for part in [&config_bytes, &tokenizer_bytes, &weights] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.update((max_tokens as u64).to_le_bytes());
        digest.update([pooling as u8]);
        let digest = digest.finalize();
        let mut id = String::from("local:");
        for byte in &digest[..8] {
            id.push_str(&format!("{byte:02x}"));
        }

        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error(&dir.join(WEIGHTS_FILE), e.to_string()))?;
        let bert = BertModel::load(vb, &config)
            .map_err(|e| load_error(&dir.join(WEIGHTS_FILE), e.to_string()))?;

        let concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            id,
            dir: dir.to_owned(),
            dimensions: config.hidden_size,
            max_tokens,
            model: Arc::new(Model {
                bert,
                tokenizer,
                pooling,
                device,
            }),
            slots: Arc::new(Semaphore::new(concurrency)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: concurrency * (WAITING_PER_SLOT + 1),
        })
    }

    /// Allows `concurrency` inferences at once and `max_waiting` more to wait for a slot.
    pub fn with_limits(mut self, concurrency: usize, max_waiting: usize) -> Self {
        let concurrency = concurrency.max(1);
        self.slots = Arc::new(Semaphore::new(concurrency));
        self.max_in_flight = concurrency + max_waiting;
        self
    }

    /// The longest input, in tokens, that is embedded whole.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Embeds `text` on the calling thread. For tools and benchmarks; request handling uses
    /// [`Embedder::embed`], which keeps inference off the async executor.
    pub fn embed_blocking(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.model.embed(text)
    }
}

/// Decrements the in-flight count when an embedding finishes or is abandoned.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(self.in_flight.clone());
        if before >= self.max_in_flight {
            return Err(EmbedError::Busy {
                waiting: before.saturating_sub(self.slots.available_permits()),
            });
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EmbedError::Inference("the embedder was shut down".to_owned()))?;
        let model = self.model.clone();
        let text = text.to_owned();
        // Dropping this future (the client went away) leaves the inference running to
        // completion with its slot, so the concurrency bound always holds.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let _in_flight = in_flight;
            model.embed(&text)
        })
        .await
        .map_err(|e| EmbedError::Inference(format!("the inference thread failed: {e}")))?
    }
}

impl Model {
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let infer = |e: candle_core::Error| EmbedError::Inference(e.to_string());
        let ids = Tensor::new(encoding.get_ids(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(infer)?;
        let type_ids = Tensor::new(encoding.get_type_ids(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(infer)?;
        let mask = Tensor::new(encoding.get_attention_mask(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(infer)?;
        // (1, tokens, hidden)
        let states = self
            .bert
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(infer)?;
        let pooled = match self.pooling {
            Pooling::Mean => mean_over_mask(&states, &mask),
            Pooling::Cls => states.get(0).and_then(|s| s.get(0)),
        }
        .map_err(infer)?;
        let mut vector: Vec<f32> = pooled.to_vec1().map_err(infer)?;
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Err(EmbedError::InvalidVector(
                "the model produced a zero or non-finite vector".to_owned(),
            ));
        }
        for v in &mut vector {
            *v /= norm;
        }
        Ok(vector)
    }
}

/// The mean of `states` (1, tokens, hidden) over the tokens whose `mask` (1, tokens) is 1,
/// as a (hidden) vector.
fn mean_over_mask(states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = states.broadcast_mul(&mask)?.sum(1)?;
    let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    summed.broadcast_div(&count)?.get(0)
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, EmbedError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EmbedError::Load {
            path,
            message: e.to_string(),
        }),
    }
}
