//! Validated limit rules: what is counted, per which scope, up to what limit.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::scope::ScopeKind;
use portcullis_core::config::Issue;

/// Longest accepted rate window.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);
/// Longest accepted rule id.
const MAX_ID_LEN: usize = 64;

/// What a rate rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// Requests: each admitted request counts one.
    Requests,
    /// Tokens: estimated before the call, settled with the real count after it.
    Tokens,
}

impl RateUnit {
    /// `requests` or `tokens`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Requests => "requests",
            RateUnit::Tokens => "tokens",
        }
    }
}

/// How a rate rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a smooth token bucket holding `limit` units and refilling
    /// continuously over `window`. Exact `retry_after`. The default.
    #[default]
    Gcra,
    /// Two fixed windows, the previous one weighted by how much of it still overlaps the sliding
    /// window. Approximate, allows no bursts beyond `limit` per window.
    SlidingWindow,
}

impl Algorithm {
    /// `gcra` or `sliding_window`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "gcra" => Ok(Algorithm::Gcra),
            "sliding_window" => Ok(Algorithm::SlidingWindow),
            other => Err(format!(
                "unknown algorithm `{other}`; expected gcra or sliding_window"
            )),
        }
    }
}

/// The calendar window of a budget (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// From 00:00 UTC to the next 00:00 UTC.
    Daily,
    /// From Monday 00:00 UTC to the next Monday.
    Weekly,
    /// From the first of the month 00:00 UTC to the first of the next.
    Monthly,
}

impl Period {
    /// `daily`, `weekly` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
}

impl FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "daily" => Ok(Period::Daily),
            "weekly" => Ok(Period::Weekly),
            "monthly" => Ok(Period::Monthly),
            other => Err(format!(
                "unknown period `{other}`; expected daily, weekly or monthly"
            )),
        }
    }
}

/// A rate limit: `limit` units per `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    /// Requests or tokens.
    pub unit: RateUnit,
    /// Units allowed per window (also the largest burst).
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// How conformance is decided.
    pub algorithm: Algorithm,
}

/// A spend budget per calendar window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    /// The limit in micro-dollars (US$ 1 = 1 000 000).
    pub limit_micros: i64,
    /// The calendar window.
    pub period: Period,
}

/// What a rule limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Requests or tokens per window.
    Rate(RateRule),
    /// Requests in flight at once.
    Concurrency {
        /// Most requests in flight.
        max_in_flight: u32,
    },
    /// Spend per calendar window.
    Budget(BudgetRule),
}

/// One rule: a limit applied to one scope kind, for one value (`matches`) or for each distinct
/// value separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique id; part of every counter key, so renaming a rule starts its counters afresh.
    pub id: Arc<str>,
    /// The scope kind counted along.
    pub scope: ScopeKind,
    /// Only this scope value, when set; otherwise one counter per distinct value.
    pub matches: Option<Arc<str>>,
    /// The limit.
    pub kind: RuleKind,
    /// Admit requests when the backend cannot be reached (`true`), or refuse them with a
    /// 503-style refusal (`false`). Defaults: open for rate and concurrency rules, closed for
    /// budgets, since overspending money is worse than an outage.
    pub fail_open: bool,
}

impl Rule {
    fn new(id: &str, scope: ScopeKind, kind: RuleKind) -> Rule {
        let fail_open = !matches!(kind, RuleKind::Budget(_));
        Rule {
            id: Arc::from(id),
            scope,
            matches: None,
            kind,
            fail_open,
        }
    }

    /// At most `limit` requests per `window` (GCRA).
    pub fn requests(id: &str, scope: ScopeKind, limit: u64, window: Duration) -> Rule {
        Rule::new(
            id,
            scope,
            RuleKind::Rate(RateRule {
                unit: RateUnit::Requests,
                limit,
                window,
                algorithm: Algorithm::Gcra,
            }),
        )
    }

    /// At most `limit` tokens per `window` (GCRA).
    pub fn tokens(id: &str, scope: ScopeKind, limit: u64, window: Duration) -> Rule {
        Rule::new(
            id,
            scope,
            RuleKind::Rate(RateRule {
                unit: RateUnit::Tokens,
                limit,
                window,
                algorithm: Algorithm::Gcra,
            }),
        )
    }

    /// At most `max_in_flight` requests at once.
    pub fn concurrency(id: &str, scope: ScopeKind, max_in_flight: u32) -> Rule {
        Rule::new(id, scope, RuleKind::Concurrency { max_in_flight })
    }

    /// At most `usd` US dollars spent per `period`.
    pub fn budget(id: &str, scope: ScopeKind, usd: f64, period: Period) -> Rule {
        Rule::new(
            id,
            scope,
            RuleKind::Budget(BudgetRule {
                limit_micros: usd_to_micros(usd),
                period,
            }),
        )
    }

    /// Applies only to requests whose scope value is `value`.
    pub fn matching(mut self, value: &str) -> Rule {
        self.matches = Some(Arc::from(value));
        self
    }

    /// Uses `algorithm` (rate rules only).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Rule {
        if let RuleKind::Rate(rate) = &mut self.kind {
            rate.algorithm = algorithm;
        }
        self
    }

    /// Sets what happens when the backend cannot be reached.
    pub fn with_fail_open(mut self, fail_open: bool) -> Rule {
        self.fail_open = fail_open;
        self
    }

    /// The rule's problems, as `(field, message)`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(message) = check_id(&self.id) {
            problems.push(("id", message));
        }
        if let Some(value) = &self.matches {
            if self.scope == ScopeKind::Global {
                problems.push(("match", "a global rule cannot match a value".to_owned()));
            } else if value.is_empty() {
                problems.push(("match", "must not be empty".to_owned()));
            }
        }
        match &self.kind {
            RuleKind::Rate(rate) => {
                if rate.limit == 0 {
                    problems.push((rate.unit.as_str(), "must be at least 1".to_owned()));
                }
                if rate.window < Duration::from_millis(1) || rate.window > MAX_WINDOW {
                    problems.push(("window", "must be between 1ms and 31d".to_owned()));
                } else if rate.unit == RateUnit::Requests
                    && rate.window.as_micros() < u128::from(rate.limit)
                {
                    problems.push((
                        "requests",
                        "more than one request per microsecond cannot be limited".to_owned(),
                    ));
                }
            }
            RuleKind::Concurrency { max_in_flight } => {
                if *max_in_flight == 0 {
                    problems.push(("concurrent", "must be at least 1".to_owned()));
                }
            }
            RuleKind::Budget(budget) => {
                if budget.limit_micros <= 0 {
                    problems.push(("usd", "must be a positive amount".to_owned()));
                }
            }
        }
        problems
    }
}

/// Checks a rule id: 1–64 characters of `A-Z a-z 0-9 _ - .`.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("must be 1 to {MAX_ID_LEN} characters long"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "`{id}` may contain only letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

/// Converts dollars to micro-dollars, rounding to the nearest; non-finite amounts become 0.
pub(crate) fn usd_to_micros(usd: f64) -> i64 {
    if !usd.is_finite() {
        return 0;
    }
    // A float-to-int `as` cast saturates, which is the wanted behaviour for absurd amounts.
    (usd * 1_000_000.0).round() as i64
}

/// A validated, ordered set of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitRules {
    rules: Vec<Rule>,
}

impl LimitRules {
    /// No rules: every request is admitted without touching a backend.
    pub fn empty() -> LimitRules {
        LimitRules::default()
    }

    /// Validates `rules`; every problem is reported with its position (`rules[2].window: …`).
    pub fn new(rules: Vec<Rule>) -> Result<LimitRules, Vec<Issue>> {
        let mut issues = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for (field, message) in rule.problems() {
                issues.push(Issue::new(format!("rules[{index}].{field}"), message));
            }
            if rules[..index].iter().any(|earlier| earlier.id == rule.id) {
                issues.push(Issue::new(
                    format!("rules[{index}].id"),
                    format!("duplicate rule id `{}`", rule.id),
                ));
            }
        }
        if issues.is_empty() {
            Ok(LimitRules { rules })
        } else {
            Err(issues)
        }
    }

    /// Wraps rules already validated by the configuration.
    pub(crate) fn from_validated(rules: Vec<Rule>) -> LimitRules {
        LimitRules { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl fmt::Display for RateRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} per {}",
            self.limit,
            self.unit.as_str(),
            format_window(self.window)
        )
    }
}

/// A window in its largest whole unit: `500ms`, `30s`, `1m`, `2h`, `1d`.
pub(crate) fn format_window(window: Duration) -> String {
    let ms = window.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
