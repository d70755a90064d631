//! The engine the gateway calls: [`Limiter::admit`] before the upstream call, then
//! [`Admission::settle`] (or dropping the admission) after it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use smallvec::SmallVec;

use crate::algo;
use crate::backend::{
    AcquireOutcome, AcquireRequest, BackendError, Charge, ChargeOp, CounterKey, CounterState,
    LimitBackend, SettleOp, SettleRequest, Settlement,
};
use crate::calendar::budget_window;
use crate::rules::{Algorithm, LimitRules, Period, RateUnit, Rule, RuleKind, usd_to_micros};
use crate::scope::{ScopeKind, Subjects};
use crate::seed::{SeedError, SpendSeed};

/// How long a budget counter outlives its window, so late settlements still find it.
const BUDGET_GRACE: Duration = Duration::from_secs(3_600);
/// Seeding attempts before a backend that keeps losing budget counters counts as failing.
const SEED_ATTEMPTS: usize = 2;
/// Independent locks serialising the seeding of one budget counter within this process.
const SEED_STRIPES: usize = 64;
/// Suggested wait after a concurrency or availability refusal.
const SHORT_RETRY: Duration = Duration::from_secs(1);

/// What a request is expected to consume, known before the upstream call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Tokens (input plus the expected or maximum output). Token rules charge at least 1
    /// and at most their limit up front; settlement corrects the difference.
    pub tokens: u64,
    /// Cost in US dollars, reserved against budgets until settlement.
    pub cost_usd: f64,
}

/// Counts of backend failures and what was decided, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Admissions that failed to reach the backend (or the spend seed).
    pub backend_errors: u64,
    /// Requests admitted unchecked because every rule involved fails open.
    pub fail_open_admissions: u64,
    /// Requests refused (503) because a rule involved fails closed.
    pub fail_closed_refusals: u64,
}

/// Applies rate limits, concurrency limits and budgets to requests. Built once at startup;
/// clones share everything.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    rules: LimitRules,
    /// Whether any rule is scoped to a model or a provider (checked per upstream target).
    target_rules: bool,
    backend: Arc<dyn LimitBackend>,
    seed: Option<Arc<dyn SpendSeed>>,
    next_lease: AtomicU64,
    seed_locks: Box<[tokio::sync::Mutex<()>]>,
    counters: Arc<Counters>,
    last_warning_us: AtomicI64,
}

/// Backend failures and what was decided about them; shared by a limiter and those
/// [`Limiter::reconfigured`] from it, so the counts survive a reload.
#[derive(Debug, Default)]
struct Counters {
    backend_errors: AtomicU64,
    fail_open_admissions: AtomicU64,
    fail_closed_refusals: AtomicU64,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("rules", &self.inner.rules.len())
            .field("backend", &self.inner.backend)
            .field("seed", &self.inner.seed.is_some())
            .finish()
    }
}

/// The rules of one admission: the limiter's own, then the request's extra rules (e.g. a
/// virtual key's own limits). Indexes run through both.
#[derive(Clone, Copy)]
struct RuleSet<'a> {
    base: &'a [Rule],
    extra: &'a [Rule],
}

impl<'a> RuleSet<'a> {
    fn new(base: &'a [Rule], extra: Option<&'a Arc<[Rule]>>) -> Self {
        Self {
            base,
            extra: extra.map_or(&[], |e| &e[..]),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'a Rule> + use<'a> {
        self.base.iter().chain(self.extra.iter())
    }
}

impl std::ops::Index<usize> for RuleSet<'_> {
    type Output = Rule;

    fn index(&self, i: usize) -> &Rule {
        match self.base.get(i) {
            Some(rule) => rule,
            None => &self.extra[i - self.base.len()],
        }
    }
}

/// One rule as it applies to the request being admitted.
struct Planned<'a> {
    rule: usize,
    value: &'a str,
    detail: Detail,
}

/// What an admission remembers per rule to report and settle.
#[derive(Debug, Clone, Copy)]
enum Detail {
    Rate {
        amount: u64,
        window_index: i64,
    },
    Concurrency,
    Budget {
        reserved_micros: i64,
        window_end_us: i64,
        window_start_us: i64,
    },
}

#[derive(Debug)]
struct Held {
    rule: usize,
    key: CounterKey,
    state: CounterState,
    detail: Detail,
}

enum Failure {
    Backend(BackendError),
    Seed(SeedError),
    Unseeded,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Backend(error) => error.fmt(f),
            Failure::Seed(error) => write!(f, "spend seed: {error}"),
            Failure::Unseeded => f.write_str("budget counters vanish as soon as they are seeded"),
        }
    }
}

impl From<BackendError> for Failure {
    fn from(error: BackendError) -> Self {
        Failure::Backend(error)
    }
}

/// Scopes that name the upstream target rather than the caller.
fn is_target_scope(scope: ScopeKind) -> bool {
    matches!(scope, ScopeKind::Model | ScopeKind::Provider)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn duration_from_micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0).unsigned_abs())
}

impl Limiter {
    /// A limiter applying `rules` on `backend`; budgets are seeded from `seed` when given
    /// (otherwise a new budget window starts at zero).
    pub fn new(
        rules: LimitRules,
        backend: Arc<dyn LimitBackend>,
        seed: Option<Arc<dyn SpendSeed>>,
    ) -> Limiter {
        Self::with_counters(rules, backend, seed, Arc::default())
    }

    /// A limiter applying `rules` over this one's backend and seed, counting its backend
    /// failures in this one's counters (a reload: the counts and what the backend holds carry
    /// over, the rules change).
    pub fn reconfigured(&self, rules: LimitRules) -> Limiter {
        Self::with_counters(
            rules,
            self.inner.backend.clone(),
            self.inner.seed.clone(),
            self.inner.counters.clone(),
        )
    }

    fn with_counters(
        rules: LimitRules,
        backend: Arc<dyn LimitBackend>,
        seed: Option<Arc<dyn SpendSeed>>,
        counters: Arc<Counters>,
    ) -> Limiter {
        let target_rules = rules.rules().iter().any(|r| is_target_scope(r.scope));
        Limiter {
            inner: Arc::new(Inner {
                rules,
                target_rules,
                backend,
                seed,
                next_lease: AtomicU64::new(1),
                seed_locks: (0..SEED_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                counters,
                last_warning_us: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// True when there are no rules: the gateway may skip the limiter entirely.
    pub fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// The rules applied.
    pub fn rules(&self) -> &LimitRules {
        &self.inner.rules
    }

    /// Backend failures and fail-open/closed decisions so far.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            backend_errors: self.inner.counters.backend_errors.load(Ordering::Relaxed),
            fail_open_admissions: self
                .inner
                .counters
                .fail_open_admissions
                .load(Ordering::Relaxed),
            fail_closed_refusals: self
                .inner
                .counters
                .fail_closed_refusals
                .load(Ordering::Relaxed),
        }
    }

    /// Waits until every settlement started so far has reached the backend (for shutdown).
    pub async fn drain(&self) {
        self.inner.backend.drain().await;
    }

    /// Checks every rule that applies to the request and takes from all of them at once, or
    /// from none: a refused request consumes nothing.
    ///
    /// Rules apply when their scope has a value in `who` (and it equals `match`, if set).
    /// Requests count 1; token rules take `estimate.tokens`; budgets reserve
    /// `estimate.cost_usd`. When several rules refuse, the refusal reported is the one asking
    /// for the longest wait.
    pub async fn admit(
        &self,
        who: &Subjects<'_>,
        estimate: Estimate,
    ) -> Result<Admission, Refusal> {
        self.admit_with(who, estimate, None).await
    }

    /// [`Limiter::admit`] with `extra` rules checked in the same atomic step as the limiter's
    /// own (a virtual key's own limits and budget, say).
    pub async fn admit_with(
        &self,
        who: &Subjects<'_>,
        estimate: Estimate,
        extra: Option<&Arc<[Rule]>>,
    ) -> Result<Admission, Refusal> {
        self.admit_scoped(who, estimate, extra, false).await
    }

    /// Whether any rule is scoped to a model or a provider: such rules are checked for each
    /// upstream target a request is sent to ([`Limiter::admit_target`]), not for the request.
    pub fn has_target_rules(&self) -> bool {
        self.inner.target_rules
    }

    /// Checks only the model- and provider-scoped rules, for the target (`model` at
    /// `provider`) a request is about to be sent to, and takes from them at once or not at
    /// all. A request that fails over to another target is admitted again for that target;
    /// the admission of the one it left is dropped (refunded) unsettled.
    pub async fn admit_target(
        &self,
        model: &str,
        provider: &str,
        estimate: Estimate,
    ) -> Result<Admission, Refusal> {
        let who = Subjects {
            model: Some(model),
            provider: Some(provider),
            ..Subjects::default()
        };
        self.admit_scoped(&who, estimate, None, true).await
    }

    async fn admit_scoped(
        &self,
        who: &Subjects<'_>,
        estimate: Estimate,
        extra: Option<&Arc<[Rule]>>,
        target_only: bool,
    ) -> Result<Admission, Refusal> {
        let inner = &self.inner;
        let mut admission = Admission {
            inner: Arc::clone(inner),
            extra: extra.cloned(),
            lease: 0,
            admitted_at_us: 0,
            held: SmallVec::new(),
        };
        if inner.rules.is_empty() && extra.is_none_or(|e| e.is_empty()) {
            return Ok(admission);
        }
        let rules = RuleSet::new(inner.rules.rules(), extra);
        let now = inner.backend.clock().now_micros();
        let mut planned: SmallVec<[Planned<'_>; 8]> = SmallVec::new();
        let mut charges: SmallVec<[Charge; 8]> = SmallVec::new();
        for (index, rule) in rules.iter().enumerate() {
            if target_only && !is_target_scope(rule.scope) {
                continue;
            }
            let Some(value) = who.value(rule.scope) else {
                continue;
            };
            if rule
                .matches
                .as_deref()
                .is_some_and(|wanted| wanted != value)
            {
                continue;
            }
            let (op, detail, window_start) = plan(rule, estimate, now);
            let key = inner.backend.counter_key(&rule.id, window_start, value);
            planned.push(Planned {
                rule: index,
                value,
                detail,
            });
            charges.push(Charge { key, op });
        }
        if charges.is_empty() {
            return Ok(admission);
        }
        let lease = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        admission.lease = lease;
        admission.admitted_at_us = now;
        let mut attempt = 0;
        loop {
            let request = AcquireRequest {
                now_us: now,
                lease,
                charges: &charges,
            };
            let outcome = match inner.backend.acquire(request).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.fail(rules, &planned, &Failure::Backend(error), now)?;
                    return Ok(admission);
                }
            };
            if outcome.admitted {
                admission.held = planned
                    .iter()
                    .zip(charges)
                    .zip(&outcome.verdicts)
                    .map(|((planned, charge), verdict)| Held {
                        rule: planned.rule,
                        key: charge.key,
                        state: verdict.state,
                        detail: planned.detail,
                    })
                    .collect();
                return Ok(admission);
            }
            let refused = outcome
                .verdicts
                .iter()
                .any(|v| !v.conforms && v.state != CounterState::Unseeded);
            if refused {
                return Err(self.refusal(rules, &planned, &charges, &outcome, now));
            }
            if attempt == SEED_ATTEMPTS {
                self.fail(rules, &planned, &Failure::Unseeded, now)?;
                return Ok(admission);
            }
            attempt += 1;
            if let Err(failure) = self
                .seed_budgets(rules, &planned, &charges, &outcome, now)
                .await
            {
                self.fail(rules, &planned, &failure, now)?;
                return Ok(admission);
            }
        }
    }

    /// Creates the budget counters the backend reported missing, from the spend seed.
    async fn seed_budgets(
        &self,
        rules: RuleSet<'_>,
        planned: &[Planned<'_>],
        charges: &[Charge],
        outcome: &AcquireOutcome,
        now: i64,
    ) -> Result<(), Failure> {
        let inner = &self.inner;
        for ((planned, charge), verdict) in planned.iter().zip(charges).zip(&outcome.verdicts) {
            let Detail::Budget {
                window_start_us,
                window_end_us,
                ..
            } = planned.detail
            else {
                continue;
            };
            if verdict.state != CounterState::Unseeded {
                continue;
            }
            let stripe = (charge.key.stripe() % SEED_STRIPES as u64) as usize;
            let _seeding = inner.seed_locks[stripe].lock().await;
            if inner.backend.budget_exists(&charge.key).await? {
                continue;
            }
            let rule = &rules[planned.rule];
            let spent_usd = match &inner.seed {
                Some(seed) => seed
                    .spent_since(rule.scope, planned.value, window_start_us.div_euclid(1_000))
                    .await
                    .map_err(Failure::Seed)?,
                None => 0.0,
            };
            let ttl = duration_from_micros(window_end_us - now) + BUDGET_GRACE;
            inner
                .backend
                .seed_budget(&charge.key, usd_to_micros(spent_usd).max(0), now, ttl)
                .await?;
        }
        Ok(())
    }

    /// The backend failed: admit unchecked if every rule involved fails open, else refuse.
    fn fail(
        &self,
        rules: RuleSet<'_>,
        planned: &[Planned<'_>],
        failure: &Failure,
        now: i64,
    ) -> Result<(), Refusal> {
        let inner = &self.inner;
        inner
            .counters
            .backend_errors
            .fetch_add(1, Ordering::Relaxed);
        let closed = planned.iter().find(|p| !rules[p.rule].fail_open);
        let last = inner.last_warning_us.load(Ordering::Relaxed);
        let warn = now.saturating_sub(last) >= 1_000_000
            && inner
                .last_warning_us
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        match closed {
            Some(planned) => {
                inner
                    .counters
                    .fail_closed_refusals
                    .fetch_add(1, Ordering::Relaxed);
                let rule = &rules[planned.rule];
                if warn {
                    tracing::warn!(error = %failure, rule = %rule.id, "limits backend failed; refusing (fail closed)");
                }
                Err(unavailable(rule, planned.value))
            }
            None => {
                inner
                    .counters
                    .fail_open_admissions
                    .fetch_add(1, Ordering::Relaxed);
                if warn {
                    tracing::warn!(error = %failure, "limits backend failed; admitting unchecked (fail open)");
                }
                Ok(())
            }
        }
    }

    fn refusal(
        &self,
        rules: RuleSet<'_>,
        planned: &[Planned<'_>],
        charges: &[Charge],
        outcome: &AcquireOutcome,
        now: i64,
    ) -> Refusal {
        let mut worst: Option<(usize, Assessment)> = None;
        for (index, ((planned, charge), verdict)) in planned
            .iter()
            .zip(charges)
            .zip(&outcome.verdicts)
            .enumerate()
        {
            if verdict.conforms || verdict.state == CounterState::Unseeded {
                continue;
            }
            let assessment = assess(&rules[planned.rule], &charge.op, verdict.state, now);
            if worst
                .as_ref()
                .is_none_or(|(_, w)| assessment.retry_after_us > w.retry_after_us)
            {
                worst = Some((index, assessment));
            }
        }
        match worst {
            Some((index, assessment)) => {
                let planned = &planned[index];
                build_refusal(&rules[planned.rule], planned.value, &assessment)
            }
            None => {
                // Not reachable: the caller checked a verdict refused. Report the first rule.
                let planned = &planned[0];
                unavailable(&rules[planned.rule], planned.value)
            }
        }
    }
}

/// Turns a rule into this request's charge.
fn plan(rule: &Rule, estimate: Estimate, now: i64) -> (ChargeOp, Detail, Option<i64>) {
    match &rule.kind {
        RuleKind::Rate(rate) => {
            let window_us = micros(rate.window);
            let amount = match rate.unit {
                RateUnit::Requests => 1,
                RateUnit::Tokens => estimate.tokens.clamp(1, rate.limit.max(1)),
            };
            match rate.algorithm {
                Algorithm::Gcra => (
                    ChargeOp::Gcra {
                        increment_us: algo::gcra_increment(amount, window_us, rate.limit),
                        window_us,
                    },
                    Detail::Rate {
                        amount,
                        window_index: 0,
                    },
                    None,
                ),
                Algorithm::SlidingWindow => {
                    let (window_index, previous_weight) = algo::sliding_weight(now, window_us);
                    (
                        ChargeOp::SlidingWindow {
                            limit: rate.limit,
                            amount,
                            window_index,
                            previous_weight,
                            window_us,
                        },
                        Detail::Rate {
                            amount,
                            window_index,
                        },
                        None,
                    )
                }
            }
        }
        RuleKind::Concurrency { max_in_flight } => (
            ChargeOp::Concurrency {
                limit: *max_in_flight,
            },
            Detail::Concurrency,
            None,
        ),
        RuleKind::Budget(budget) => {
            let (start, end) = budget_window(budget.period, now);
            let estimate_micros = usd_to_micros(estimate.cost_usd).max(0);
            (
                ChargeOp::Budget {
                    limit_micros: budget.limit_micros,
                    estimate_micros,
                },
                Detail::Budget {
                    reserved_micros: estimate_micros,
                    window_start_us: start,
                    window_end_us: end,
                },
                Some(start),
            )
        }
    }
}

/// A refused charge's numbers.
struct Assessment {
    retry_after_us: i64,
    reset_us: i64,
    limit: u64,
    remaining: u64,
    /// Budgets: spent and reserved micro-dollars, and the estimate that did not fit.
    money: Option<(i64, i64, i64)>,
}

fn assess(rule: &Rule, op: &ChargeOp, state: CounterState, now: i64) -> Assessment {
    match (op, state, &rule.kind) {
        (
            ChargeOp::Gcra {
                increment_us,
                window_us,
            },
            CounterState::Gcra { tat_us },
            RuleKind::Rate(rate),
        ) => Assessment {
            retry_after_us: algo::gcra_retry_after(tat_us, now, *increment_us, *window_us),
            reset_us: tat_us - now,
            limit: rate.limit,
            remaining: algo::gcra_remaining(tat_us, now, *window_us, rate.limit),
            money: None,
        },
        (
            ChargeOp::SlidingWindow {
                limit,
                amount,
                window_index,
                previous_weight,
                window_us,
            },
            CounterState::SlidingWindow { previous, current },
            _,
        ) => Assessment {
            retry_after_us: algo::sliding_retry_after(
                previous, current, *amount, *limit, now, *window_us,
            ),
            reset_us: (window_index + 1) * window_us - now,
            limit: *limit,
            remaining: algo::sliding_remaining(previous, current, *previous_weight, *limit),
            money: None,
        },
        (ChargeOp::Concurrency { limit }, _, _) => Assessment {
            retry_after_us: micros(SHORT_RETRY),
            reset_us: micros(SHORT_RETRY),
            limit: u64::from(*limit),
            remaining: 0,
            money: None,
        },
        (
            ChargeOp::Budget {
                limit_micros,
                estimate_micros,
            },
            CounterState::Budget {
                spent_micros,
                reserved_micros,
            },
            RuleKind::Budget(budget),
        ) => {
            let (_, end) = budget_window(budget.period, now);
            let limit_micros = *limit_micros;
            let left = limit_micros - spent_micros - reserved_micros;
            Assessment {
                retry_after_us: end - now,
                reset_us: end - now,
                limit: limit_micros.max(0).unsigned_abs(),
                remaining: left.max(0).unsigned_abs(),
                money: Some((spent_micros, reserved_micros, *estimate_micros)),
            }
        }
        _ => Assessment {
            retry_after_us: micros(SHORT_RETRY),
            reset_us: micros(SHORT_RETRY),
            limit: 0,
            remaining: 0,
            money: None,
        },
    }
}

/// Why a request was refused, with everything a 429 (or 503) answer needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The refusing rule's id.
    pub rule_id: Arc<str>,
    /// The rule's scope kind.
    pub scope: ScopeKind,
    /// The scope value the request presented (`None` for global rules).
    pub scope_value: Option<String>,
    /// What ran out.
    pub kind: RefusalKind,
    /// The limit: requests, tokens or in-flight requests; micro-dollars for budgets.
    pub limit: u64,
    /// What is left now, in the same unit.
    pub remaining: u64,
    /// How long to wait before retrying: exact for GCRA rules, an estimate assuming no other
    /// traffic for sliding windows, the time to the next window for budgets, a short hint for
    /// concurrency and availability refusals.
    pub retry_after: Duration,
    /// Until the limit fully resets (GCRA: the bucket is full again; sliding window and
    /// budget: the current window ends).
    pub reset: Duration,
    /// A sentence for the caller, e.g. ``Rate limit of 100 requests per 1m for user `alice`
    /// exceeded; retry in 12s``.
    pub message: String,
}

/// What ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// A requests-per-window rule.
    Requests,
    /// A tokens-per-window rule.
    Tokens,
    /// A concurrency rule.
    Concurrency,
    /// A spend budget.
    Budget,
    /// The backend could not be reached and the rule fails closed.
    Unavailable,
}

impl Refusal {
    /// The HTTP status to answer with: 503 when limits could not be checked, else 429.
    pub fn status(&self) -> u16 {
        match self.kind {
            RefusalKind::Unavailable => 503,
            _ => 429,
        }
    }
}

fn subject(rule: &Rule, value: &str) -> String {
    match rule.scope {
        ScopeKind::Global => "all requests".to_owned(),
        scope => format!("{scope} `{value}`"),
    }
}

fn scope_value(rule: &Rule, value: &str) -> Option<String> {
    (rule.scope != ScopeKind::Global).then(|| value.to_owned())
}

fn unavailable(rule: &Rule, value: &str) -> Refusal {
    Refusal {
        rule_id: Arc::clone(&rule.id),
        scope: rule.scope,
        scope_value: scope_value(rule, value),
        kind: RefusalKind::Unavailable,
        limit: 0,
        remaining: 0,
        retry_after: SHORT_RETRY,
        reset: SHORT_RETRY,
        message: format!(
            "Limit `{}` for {} cannot be checked right now (limits backend unavailable); retry in {}",
            rule.id,
            subject(rule, value),
            format_wait(SHORT_RETRY)
        ),
    }
}

fn build_refusal(rule: &Rule, value: &str, assessment: &Assessment) -> Refusal {
    let retry_after = duration_from_micros(assessment.retry_after_us);
    let reset = duration_from_micros(assessment.reset_us);
    let who = subject(rule, value);
    let (kind, message) = match &rule.kind {
        RuleKind::Rate(rate) => (
            match rate.unit {
                RateUnit::Requests => RefusalKind::Requests,
                RateUnit::Tokens => RefusalKind::Tokens,
            },
            format!(
                "Rate limit of {rate} for {who} exceeded; retry in {}",
                format_wait(retry_after)
            ),
        ),
        RuleKind::Concurrency { max_in_flight } => (
            RefusalKind::Concurrency,
            format!(
                "Concurrency limit of {max_in_flight} in-flight requests for {who} reached; retry in {}",
                format_wait(retry_after)
            ),
        ),
        RuleKind::Budget(budget) => {
            let (spent, reserved, estimate) = assessment.money.unwrap_or_default();
            let period = match budget.period {
                Period::Daily => "Daily",
                Period::Weekly => "Weekly",
                Period::Monthly => "Monthly",
            };
            let limit = format_usd(budget.limit_micros);
            let in_flight = if reserved > 0 {
                format!(", {} reserved by requests in flight", format_usd(reserved))
            } else {
                String::new()
            };
            let message = if spent + reserved >= budget.limit_micros {
                format!(
                    "{period} budget of {limit} for {who} exhausted ({} spent{in_flight}); resets in {}",
                    format_usd(spent),
                    format_wait(retry_after)
                )
            } else {
                format!(
                    "{period} budget of {limit} for {who} has {} left, less than this request's estimated {} ({} spent{in_flight}); resets in {}",
                    format_usd(budget.limit_micros - spent - reserved),
                    format_usd(estimate),
                    format_usd(spent),
                    format_wait(retry_after)
                )
            };
            (RefusalKind::Budget, message)
        }
    };
    Refusal {
        rule_id: Arc::clone(&rule.id),
        scope: rule.scope,
        scope_value: scope_value(rule, value),
        kind,
        limit: assessment.limit,
        remaining: assessment.remaining,
        retry_after,
        reset,
        message,
    }
}

/// A wait rounded up to whole seconds, in at most two units: `12s`, `3m 5s`, `2h 4m`, `1d 3h`.
fn format_wait(wait: Duration) -> String {
    let mut seconds = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        seconds += 1;
    }
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Micro-dollars as dollars: cents when exact (`$5.02`), otherwise up to six decimals.
fn format_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (dollars, fraction) = (abs / 1_000_000, abs % 1_000_000);
    if fraction % 10_000 == 0 {
        format!("{sign}${dollars}.{:02}", fraction / 10_000)
    } else {
        let digits = format!("{fraction:06}");
        format!("{sign}${dollars}.{}", digits.trim_end_matches('0'))
    }
}

/// The state of the most restrictive rate rule an admitted request passed, for `RateLimit-*`
/// response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The rule's id.
    pub rule_id: Arc<str>,
    /// Requests or tokens.
    pub unit: RateUnit,
    /// Units per window.
    pub limit: u64,
    /// Units left after this request.
    pub remaining: u64,
    /// Until the limit is fully available again.
    pub reset: Duration,
    /// The rule's window.
    pub window: Duration,
}

impl RateLimitStatus {
    /// Whether `self` is more restrictive than `other`: a lower share of its limit remaining
    /// or, on a tie, a longer wait until it is fully available again.
    pub fn is_tighter_than(&self, other: &RateLimitStatus) -> bool {
        let mine = u128::from(self.remaining) * u128::from(other.limit);
        let theirs = u128::from(other.remaining) * u128::from(self.limit);
        mine < theirs || (mine == theirs && self.reset > other.reset)
    }

    /// The more restrictive of two statuses (either may be absent).
    pub fn tighter(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.is_tighter_than(&a) { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// An admitted request's hold on its counters.
///
/// Settle it with the real usage once the answer is complete ([`Admission::settle`]). Dropping
/// it unsettled (the client went away, the upstream failed) releases concurrency leases and
/// refunds token and cost estimates as if nothing was used. Neither ever blocks.
#[must_use = "dropping an admission immediately releases its leases and refunds its estimates"]
pub struct Admission {
    inner: Arc<Inner>,
    extra: Option<Arc<[Rule]>>,
    lease: u64,
    admitted_at_us: i64,
    held: SmallVec<[Held; 4]>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("lease", &self.lease)
            .field("rules", &self.held.len())
            .finish()
    }
}

impl Admission {
    /// The most restrictive rate rule this request passed (the lowest share of its limit
    /// remaining; on a tie, the longest reset), or `None` when no rate rule applied.
    pub fn rate_limit(&self) -> Option<RateLimitStatus> {
        let rules = RuleSet::new(self.inner.rules.rules(), self.extra.as_ref());
        let now = self.admitted_at_us;
        let mut best: Option<RateLimitStatus> = None;
        for held in &self.held {
            let RuleKind::Rate(rate) = &rules[held.rule].kind else {
                continue;
            };
            let window_us = micros(rate.window);
            let (remaining, reset_us) = match held.state {
                CounterState::Gcra { tat_us } => (
                    algo::gcra_remaining(tat_us, now, window_us, rate.limit),
                    tat_us - now,
                ),
                CounterState::SlidingWindow { previous, current } => {
                    let (index, weight) = algo::sliding_weight(now, window_us);
                    (
                        algo::sliding_remaining(previous, current, weight, rate.limit),
                        (index + 1) * window_us - now,
                    )
                }
                _ => continue,
            };
            let status = RateLimitStatus {
                rule_id: Arc::clone(&rules[held.rule].id),
                unit: rate.unit,
                limit: rate.limit,
                remaining,
                reset: duration_from_micros(reset_us),
                window: rate.window,
            };
            if best.as_ref().is_none_or(|b| status.is_tighter_than(b)) {
                best = Some(status);
            }
        }
        best
    }

    /// Settles with what the request really used: token rules are refunded the difference or
    /// charged the excess (never refusing), budgets turn the reservation into `actual_cost_usd`
    /// of spend, leases are released. Does not block; on Redis the update runs on a spawned
    /// task.
    pub fn settle(mut self, actual_tokens: u64, actual_cost_usd: f64) {
        self.finish(actual_tokens, actual_cost_usd);
    }

    fn finish(&mut self, actual_tokens: u64, actual_cost_usd: f64) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let backend = &self.inner.backend;
        let rules = RuleSet::new(self.inner.rules.rules(), self.extra.as_ref());
        let now = backend.clock().now_micros();
        let actual_micros = usd_to_micros(actual_cost_usd).max(0);
        let mut settlements = SmallVec::new();
        for held in held {
            let op = match (&rules[held.rule].kind, held.detail) {
                (
                    RuleKind::Rate(rate),
                    Detail::Rate {
                        amount,
                        window_index,
                    },
                ) if rate.unit == RateUnit::Tokens => {
                    let window_us = micros(rate.window);
                    match rate.algorithm {
                        Algorithm::Gcra => {
                            let adjust_us =
                                algo::gcra_increment(actual_tokens, window_us, rate.limit)
                                    - algo::gcra_increment(amount, window_us, rate.limit);
                            if adjust_us == 0 {
                                continue;
                            }
                            SettleOp::Gcra { adjust_us }
                        }
                        Algorithm::SlidingWindow => {
                            let adjust = i64::try_from(actual_tokens)
                                .unwrap_or(i64::MAX)
                                .saturating_sub(i64::try_from(amount).unwrap_or(i64::MAX));
                            if adjust == 0 {
                                continue;
                            }
                            // Extra usage happens now; refunds go back where they were taken.
                            let window_index = if adjust > 0 {
                                now.div_euclid(window_us)
                            } else {
                                window_index
                            };
                            SettleOp::SlidingWindow {
                                window_index,
                                adjust,
                                window_us,
                            }
                        }
                    }
                }
                (RuleKind::Concurrency { .. }, _) => SettleOp::Release,
                (
                    RuleKind::Budget(_),
                    Detail::Budget {
                        reserved_micros, ..
                    },
                ) => SettleOp::Budget {
                    reserved_micros,
                    actual_micros,
                },
                _ => continue,
            };
            settlements.push(Settlement { key: held.key, op });
        }
        if !settlements.is_empty() {
            backend.settle(SettleRequest {
                now_us: now,
                lease: self.lease,
                settlements,
            });
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.finish(0, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::format_window;

    #[test]
    fn a_reconfigured_limiter_keeps_the_backend_seed_and_failure_counts() {
        let first = Limiter::new(
            LimitRules::empty(),
            Arc::new(crate::MemoryBackend::new()),
            None,
        );
        first
            .inner
            .counters
            .backend_errors
            .fetch_add(3, Ordering::Relaxed);
        let second = first.reconfigured(LimitRules::empty());
        assert!(Arc::ptr_eq(&first.inner.counters, &second.inner.counters));
        assert!(Arc::ptr_eq(&first.inner.backend, &second.inner.backend));
        assert_eq!(second.stats().backend_errors, 3);
    }

    #[test]
    fn formats_windows_waits_and_money() {
        assert_eq!(format_window(Duration::from_secs(60)), "1m");
        assert_eq!(format_window(Duration::from_secs(90)), "90s");
        assert_eq!(format_window(Duration::from_millis(500)), "500ms");
        assert_eq!(format_window(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_wait(Duration::from_millis(11_001)), "12s");
        assert_eq!(format_wait(Duration::from_secs(3_725)), "1h 2m");
        assert_eq!(format_wait(Duration::from_secs(185)), "3m 5s");
        assert_eq!(format_usd(5_020_000), "$5.02");
        assert_eq!(format_usd(1_234), "$0.001234");
        assert_eq!(format_usd(50_000_000), "$50.00");
    }
}
