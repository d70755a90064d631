//! Prometheus metrics served at `GET /metrics`: requests, latency and tokens by endpoint and
//! provider; MCP tool calls by server and tool, MCP request latency by server and method,
//! servers up, tool definitions withheld for review; held tool calls (approvals) and what
//! became of their storage and webhook; the request-log writer's and the decision-audit
//! writer's counters (read when scraped), the exact cache's counters and the limiter's backend
//! failures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use portcullis_cache::CacheStore;
use portcullis_limits::Limiter;
use portcullis_store::{AuditSink, LogStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    provider: Option<Arc<str>>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    endpoint: &'static str,
    provider: Option<Arc<str>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: Option<Arc<str>>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpCallLabels {
    server: Arc<str>,
    tool: Arc<str>,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpRequestLabels {
    server: Arc<str>,
    method: &'static str,
}

/// The MCP methods named in metric labels; any other method is `other`, so that a caller
/// cannot grow the label set.
const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
];

/// `method` as a metric label: itself if it is a known MCP method, else `other`.
pub(crate) fn mcp_method_label(method: &str) -> &'static str {
    MCP_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Copy, Debug)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.5 ms … ~16 s
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, LatencyBuckets>,
    tokens: Family<TokenLabels, Counter>,
    mcp_calls: Family<McpCallLabels, Counter>,
    mcp_up: Family<McpServerLabels, prometheus_client::metrics::gauge::Gauge>,
    mcp_latency: Family<McpRequestLabels, Histogram, LatencyBuckets>,
    mcp_definition_changes: Family<McpServerLabels, Counter>,
    approvals: Family<ApprovalLabels, Counter>,
    stored_responses: Family<AuditOutcomeLabels, Counter>,
}

/// What one finished request contributes.
#[derive(Debug)]
pub struct RequestSample<'a> {
    /// `chat_completions`, `messages`, `embeddings`.
    pub endpoint: &'static str,
    /// Serving provider.
    pub provider: Option<&'a Arc<str>>,
    /// Status returned.
    pub status: u16,
    /// Seconds from arrival to the last byte.
    pub seconds: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl Metrics {
    /// Registers every metric, including the log writer's, the audit writer's (when the
    /// decision audit is on), the cache's and the limiter's counters.
    pub fn new(
        log_stats: Arc<LogStats>,
        audit: Option<AuditSink>,
        cache: Option<Arc<dyn CacheStore>>,
        limiter: Option<Limiter>,
    ) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::new_with_constructor(LatencyBuckets);
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "portcullis_requests",
            "Requests answered, by endpoint, provider and status",
            requests.clone(),
        );
        registry.register(
            "portcullis_request_duration_seconds",
            "Time from request arrival to the last response byte",
            latency.clone(),
        );
        registry.register(
            "portcullis_tokens",
            "Tokens processed, by provider and kind (input, output)",
            tokens.clone(),
        );
        let mcp_calls = Family::<McpCallLabels, Counter>::default();
        let mcp_up = Family::<McpServerLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "portcullis_mcp_tool_calls",
            "MCP tool calls, by server, tool and decision (forwarded, refused, failed)",
            mcp_calls.clone(),
        );
        registry.register(
            "portcullis_mcp_server_up",
            "Whether each MCP server is connected and answering (1) or not (0)",
            mcp_up.clone(),
        );
        let mcp_latency = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "portcullis_mcp_request_duration_seconds",
            "Time from arrival to the last response byte of MCP requests sent to a server, by \
             server and method",
            mcp_latency.clone(),
        );
        let mcp_definition_changes = Family::<McpServerLabels, Counter>::default();
        registry.register(
            "portcullis_mcp_tool_definition_changes",
            "Changed MCP tool definitions withheld from clients until an admin approves them, \
             by server (each definition counted once per process)",
            mcp_definition_changes.clone(),
        );
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "portcullis_approvals",
            "Held tool calls and what became of them, by event (held, repeated, joined, \
             write_failed, read_failed, use_failed, webhook_delivered, webhook_failed, \
             webhook_dropped, deleted, sweep_failed)",
            approvals.clone(),
        );
        let stored_responses = Family::<AuditOutcomeLabels, Counter>::default();
        registry.register(
            "portcullis_responses_stored",
            "Responses API answers kept for `previous_response_id`, by outcome: written, \
             dropped (the queue was full), failed (the database refused or kept failing)",
            stored_responses.clone(),
        );
        registry.register_collector(Box::new(LogStatsCollector(log_stats)));
        if let Some(audit) = audit {
            registry.register_collector(Box::new(AuditCollector(audit)));
        }
        registry.register_collector(Box::new(ControlsCollector { cache, limiter }));
        Self {
            registry,
            requests,
            latency,
            tokens,
            mcp_calls,
            mcp_up,
            mcp_latency,
            mcp_definition_changes,
            approvals,
            stored_responses,
        }
    }

    /// Counts `n` Responses API answers kept (`written`) or lost (`dropped`, `failed`).
    pub fn observe_stored_responses(&self, outcome: &'static str, n: u64) {
        self.stored_responses
            .get_or_create(&AuditOutcomeLabels { outcome })
            .inc_by(n);
    }

    /// Counts an event of the approvals of held tool calls (see `crate::approvals`).
    pub fn observe_approval(&self, event: &'static str) {
        self.approvals
            .get_or_create(&ApprovalLabels { event })
            .inc();
    }

    /// Counts `n` events of the approvals of held tool calls at once.
    pub fn observe_approvals(&self, event: &'static str, n: u64) {
        self.approvals
            .get_or_create(&ApprovalLabels { event })
            .inc_by(n);
    }

    /// Records how long an MCP request sent to `server` took, by its method (a label of
    /// [`mcp_method_label`]).
    pub fn observe_mcp_request(&self, server: &str, method: &'static str, seconds: f64) {
        self.mcp_latency
            .get_or_create(&McpRequestLabels {
                server: Arc::from(server),
                method,
            })
            .observe(seconds);
    }

    /// Counts a changed tool definition of `server` withheld for review.
    pub fn observe_mcp_tool_definition_change(&self, server: &str) {
        self.mcp_definition_changes
            .get_or_create(&McpServerLabels {
                server: server.to_owned(),
            })
            .inc();
    }

    /// Counts an MCP tool call of `server`'s `tool` and what became of it.
    pub fn observe_mcp_call(&self, server: &str, tool: &str, decision: &'static str) {
        self.mcp_calls
            .get_or_create(&McpCallLabels {
                server: Arc::from(server),
                tool: Arc::from(tool),
                decision,
            })
            .inc();
    }

    /// Sets whether MCP server `server` is up.
    pub fn set_mcp_server_up(&self, server: &str, up: bool) {
        self.mcp_up
            .get_or_create(&McpServerLabels {
                server: server.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Records a finished request.
    pub fn observe(&self, s: &RequestSample<'_>) {
        let provider = s.provider.cloned();
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: s.endpoint,
                provider: provider.clone(),
                status: s.status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                endpoint: s.endpoint,
                provider: provider.clone(),
            })
            .observe(s.seconds);
        if s.input_tokens > 0 {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider: provider.clone(),
                    kind: "input",
                })
                .inc_by(s.input_tokens);
        }
        if s.output_tokens > 0 {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider,
                    kind: "output",
                })
                .inc_by(s.output_tokens);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug)]
struct LogStatsCollector(Arc<LogStats>);

impl Collector for LogStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        for (name, help, value) in [
            (
                "portcullis_request_log_written",
                "Request log records written to the database",
                s.written.load(Ordering::Relaxed),
            ),
            (
                "portcullis_request_log_dropped",
                "Request log records refused because the queue was full",
                s.dropped.load(Ordering::Relaxed),
            ),
            (
                "portcullis_request_log_failed",
                "Request log records lost after every write attempt failed",
                s.failed.load(Ordering::Relaxed),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditOutcomeLabels {
    outcome: &'static str,
}

/// The decision-audit writer's counters and queue, read when scraped.
#[derive(Debug)]
struct AuditCollector(AuditSink);

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let mut records = encoder.encode_descriptor(
            "portcullis_audit_records",
            "Decision-audit records, by outcome: accepted (queued), waited (found the queue \
             full and waited for room), written (stored), lost (given up)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, value) in [
            ("accepted", &s.accepted),
            ("waited", &s.waited),
            ("written", &s.written),
            ("lost", &s.lost),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(records.encode_family(&AuditOutcomeLabels { outcome })?)?;
        }
        let checkpoints = ConstCounter::new(s.checkpoints.load(Ordering::Relaxed));
        checkpoints.encode(encoder.encode_descriptor(
            "portcullis_audit_checkpoints",
            "Decision-audit checkpoints stored",
            None,
            checkpoints.metric_type(),
        )?)?;
        let queued = ConstGauge::new(i64::try_from(self.0.queued()).unwrap_or(i64::MAX));
        queued.encode(encoder.encode_descriptor(
            "portcullis_audit_queued_records",
            "Decision-audit records in the queue, not yet taken by the writer",
            None,
            queued.metric_type(),
        )?)?;
        Ok(())
    }
}

struct ControlsCollector {
    cache: Option<Arc<dyn CacheStore>>,
    limiter: Option<Limiter>,
}

impl std::fmt::Debug for ControlsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlsCollector")
    }
}

impl Collector for ControlsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counters: Vec<(&str, &str, u64)> = Vec::new();
        if let Some(cache) = &self.cache {
            let c = cache.counters().snapshot();
            counters.extend([
                (
                    "portcullis_cache_hits",
                    "Exact cache lookups that found an entry",
                    c.hits,
                ),
                (
                    "portcullis_cache_misses",
                    "Exact cache lookups that found none",
                    c.misses,
                ),
                (
                    "portcullis_cache_stores",
                    "Exact cache entries written",
                    c.stores,
                ),
                (
                    "portcullis_cache_oversized",
                    "Answers not cached because they exceeded the entry size bound",
                    c.oversized,
                ),
                (
                    "portcullis_cache_errors",
                    "Exact cache operations that failed",
                    c.errors,
                ),
            ]);
        }
        if let Some(limiter) = &self.limiter {
            let l = limiter.stats();
            counters.extend([
                (
                    "portcullis_limits_backend_errors",
                    "Admissions that could not reach the limits store",
                    l.backend_errors,
                ),
                (
                    "portcullis_limits_fail_open_admissions",
                    "Requests admitted unchecked because the limits store was unreachable",
                    l.fail_open_admissions,
                ),
                (
                    "portcullis_limits_fail_closed_refusals",
                    "Requests refused because the limits store was unreachable",
                    l.fail_closed_refusals,
                ),
            ]);
        }
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
