//! [`Settlement`]: what happens once an answer is complete — or abandoned.
//!
//! Created on the request path after the upstream answered, it travels with the answer (inside
//! the streaming relay for streams) and runs exactly once: with the final usage when the
//! answer completed, or with what was seen when the client went away. It fills the cache with a
//! complete answer (a streamed one is rebuilt from its events), releases requests that
//! were waiting on the same cache key when there is nothing to fill, and prices the usage into
//! the log record and settles the request's limits and budgets with the real tokens and cost
//! (tokens an abandoned stream consumed are charged too).
//!
//! A caller's own prices (`x-portcullis-custom-cost`) are what budgets count only when the
//! caller may set them ([`Pricing::custom_charged`]); otherwise budgets count the list price.
//! Whenever a custom price was sent, the log keeps both figures.

use bytes::Bytes;
use portcullis_cache::CachedResponse;
use portcullis_core::{ChatResponse, Dialect, ResponseAccumulator, StreamEvent, Usage};
use portcullis_cost::Price;
use portcullis_dialects::encode_response;
use portcullis_limits::Admission;

use crate::request_log::RequestLog;
use crate::response_cache::CacheFill;
use crate::semantic::SemanticFill;

/// How one request is priced: the model's list (or configured) price, and the caller's own
/// prices applied to it when it sent some.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pricing {
    /// The model's price; `None` when unknown.
    pub list: Option<Price>,
    /// The caller's prices applied to the model's, when `x-portcullis-custom-cost` was sent.
    pub custom: Option<Price>,
    /// Whether budgets count `custom` (the key may set its own prices) rather than `list`.
    pub custom_charged: bool,
}

impl Pricing {
    /// The price budgets count.
    pub fn charged(&self) -> Option<Price> {
        match self.custom {
            Some(custom) if self.custom_charged => Some(custom),
            _ => self.list,
        }
    }
}

/// The after-answer work of one request.
#[derive(Debug)]
pub struct Settlement {
    cache: Option<CacheFill>,
    semantic: Option<SemanticFill>,
    accumulator: Option<ResponseAccumulator>,
    client_dialect: Dialect,
    provider: String,
    model: String,
    pricing: Pricing,
    /// The request's admission and its target's.
    admissions: [Option<Admission>; 2],
}

impl Settlement {
    /// Settlement of an answer from `model` at `provider` to a client speaking
    /// `client_dialect`. A streamed answer with a cache entry to fill is accumulated as it
    /// flows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cache: Option<CacheFill>,
        semantic: Option<SemanticFill>,
        stream: bool,
        client_dialect: Dialect,
        provider: &str,
        model: &str,
        pricing: Pricing,
        admissions: [Option<Admission>; 2],
    ) -> Self {
        let accumulator =
            (stream && (cache.is_some() || semantic.is_some())).then(ResponseAccumulator::new);
        Self {
            cache,
            semantic,
            accumulator,
            client_dialect,
            provider: provider.to_owned(),
            model: model.to_owned(),
            pricing,
            admissions,
        }
    }

    /// Sees one event of a streamed answer.
    pub fn observe(&mut self, event: &StreamEvent) {
        if let Some(acc) = &mut self.accumulator {
            acc.push(event);
        }
    }

    /// Prices `usage` into the log and settles the limits with it.
    fn charge(&mut self, usage: &Usage, log: &mut RequestLog) {
        let cost = self.pricing.charged().map(|p| p.cost(usage));
        if let Some(r) = log.record() {
            if cost.is_some() {
                r.cost_usd = cost;
            }
            if let Some(custom) = &self.pricing.custom {
                r.custom_cost_usd = Some(custom.cost(usage));
                r.list_cost_usd = self.pricing.list.as_ref().map(|p| p.cost(usage));
            }
        }
        for admission in self.admissions.iter_mut().filter_map(Option::take) {
            admission.settle(usage.total_tokens(), cost.unwrap_or(0.0));
        }
    }

    /// Ends a streamed answer that used `usage`; `completed` is false when it failed or the
    /// client left.
    pub fn finish_stream(mut self, completed: bool, usage: &Usage, log: &mut RequestLog) {
        self.charge(usage, log);
        let response = match self.accumulator.take() {
            Some(acc) if completed => acc.finish(),
            _ => None,
        };
        if let Some(resp) = response {
            let body = Bytes::from(encode_response(self.client_dialect, &resp));
            self.fill(self.client_dialect, body, &resp);
        }
    }

    /// Ends an answer that is not cached (embeddings): prices `usage` and settles the limits.
    pub fn finish_usage(mut self, usage: &Usage, log: &mut RequestLog) {
        self.charge(usage, log);
    }

    /// Ends a complete answer: `body` as the upstream sent it, in `dialect` (`None`: in a
    /// format no client speaks, so the caches get the answer in the client's dialect).
    pub fn finish_response(
        mut self,
        dialect: Option<Dialect>,
        body: &Bytes,
        response: &ChatResponse,
        log: &mut RequestLog,
    ) {
        self.charge(&response.usage, log);
        if self.cache.is_none() && self.semantic.is_none() {
            return;
        }
        match dialect {
            Some(dialect) => self.fill(dialect, body.clone(), response),
            None => {
                let body = Bytes::from(encode_response(self.client_dialect, response));
                self.fill(self.client_dialect, body, response);
            }
        }
    }
}

impl Settlement {
    /// Stores a complete answer in the caches waiting for it, encoded once.
    fn fill(&mut self, dialect: Dialect, body: Bytes, resp: &ChatResponse) {
        if self.cache.is_none() && self.semantic.is_none() {
            return;
        }
        let entry = CachedResponse {
            dialect,
            body,
            provider: self.provider.clone(),
            model: self.model.clone(),
            usage: resp.usage,
            stored_at_unix_ms: jiff::Timestamp::now().as_millisecond(),
        }
        .encode();
        if let Some(fill) = self.cache.take() {
            fill.fill(entry.clone());
        }
        if let Some(fill) = self.semantic.take() {
            fill.fill(entry);
        }
    }
}
