//! Per-request custom cost: the `x-portcullis-custom-cost` header (alias
//! `cf-aig-custom-cost`, Cloudflare AI Gateway's name), a JSON object of dollars per token:
//!
//! ```text
//! x-portcullis-custom-cost: {"per_token_in": 0.000001, "per_token_out": 0.000002}
//! ```
//!
//! Either field may be left out; a field given replaces every rate on its side (a custom input
//! rate applies to cached and cache-written prompt tokens too; a custom output rate to
//! reasoning tokens), a field left out keeps the model's own rate. Parsing is strict: unknown
//! or repeated fields, non-numbers, negative or non-finite numbers and an empty object are
//! errors, each with a message naming the problem.

use std::fmt;

use http::HeaderMap;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::price::{Price, TOKENS_PER_PRICE_UNIT};

/// The header carrying a custom cost.
pub const CUSTOM_COST_HEADER: &str = "x-portcullis-custom-cost";
/// Cloudflare AI Gateway's name for the same header; [`CUSTOM_COST_HEADER`] wins when both
/// are sent.
pub const CUSTOM_COST_HEADER_ALIAS: &str = "cf-aig-custom-cost";

const PER_TOKEN_IN: &str = "per_token_in";
const PER_TOKEN_OUT: &str = "per_token_out";

/// A caller-supplied price for one request, in US dollars per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomCost {
    /// Dollars per prompt token.
    pub per_token_in: Option<f64>,
    /// Dollars per generated token.
    pub per_token_out: Option<f64>,
}

/// Why a custom-cost header was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CustomCostError {
    /// The value is not UTF-8 text.
    #[error("the custom cost is not UTF-8 text")]
    NotText,
    /// The value is not JSON.
    #[error("the custom cost is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error(
        "the custom cost must be a JSON object like {{\"per_token_in\": 0.000001, \"per_token_out\": 0.000002}}, got {0}"
    )]
    NotAnObject(&'static str),
    /// The object has a field other than `per_token_in` and `per_token_out`.
    #[error(
        "unknown field `{0}` in the custom cost: expected `per_token_in` and/or `per_token_out`"
    )]
    UnknownField(String),
    /// A field appears twice.
    #[error("field `{0}` appears more than once in the custom cost")]
    DuplicateField(&'static str),
    /// A field is not a number.
    #[error("`{field}` must be a number of dollars per token, got {found}")]
    NotANumber {
        /// The field.
        field: &'static str,
        /// What it was instead.
        found: &'static str,
    },
    /// A field is negative.
    #[error("`{field}` must not be negative, got {value}")]
    Negative {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A field is too large to be a number.
    #[error("`{field}` must be a finite number")]
    NotFinite {
        /// The field.
        field: &'static str,
    },
    /// The object has neither field.
    #[error("the custom cost needs at least one of `per_token_in` and `per_token_out`")]
    Empty,
}

/// A JSON object's entries in order, duplicates kept (`serde_json::Map` would keep only the
/// last one and hide the mistake).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl CustomCost {
    /// Parses a header value.
    pub fn parse(text: &str) -> Result<Self, CustomCostError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| CustomCostError::Json(e.to_string()))?;
        if !value.is_object() {
            return Err(CustomCostError::NotAnObject(json_type(&value)));
        }
        // `Value` merges repeated fields; re-read the (small) text entry by entry to see them.
        let Entries(raw_entries) = serde_json::from_str::<Entries>(text)
            .map_err(|e| CustomCostError::Json(e.to_string()))?;

        let mut cost = CustomCost {
            per_token_in: None,
            per_token_out: None,
        };
        for (name, value) in raw_entries {
            let (field, slot) = match name.as_str() {
                PER_TOKEN_IN => (PER_TOKEN_IN, &mut cost.per_token_in),
                PER_TOKEN_OUT => (PER_TOKEN_OUT, &mut cost.per_token_out),
                _ => return Err(CustomCostError::UnknownField(name)),
            };
            if slot.is_some() {
                return Err(CustomCostError::DuplicateField(field));
            }
            let Value::Number(n) = &value else {
                return Err(CustomCostError::NotANumber {
                    field,
                    found: json_type(&value),
                });
            };
            let rate = n.as_f64().ok_or(CustomCostError::NotFinite { field })?;
            if !rate.is_finite() {
                return Err(CustomCostError::NotFinite { field });
            }
            if rate < 0.0 {
                return Err(CustomCostError::Negative { field, value: rate });
            }
            *slot = Some(rate);
        }
        if cost.per_token_in.is_none() && cost.per_token_out.is_none() {
            return Err(CustomCostError::Empty);
        }
        Ok(cost)
    }

    /// Parses a header value given as bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, CustomCostError> {
        std::str::from_utf8(bytes)
            .map_err(|_| CustomCostError::NotText)
            .and_then(Self::parse)
    }

    /// The custom cost a request carries, if any: [`CUSTOM_COST_HEADER`], else
    /// [`CUSTOM_COST_HEADER_ALIAS`].
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Self, CustomCostError>> {
        headers
            .get(CUSTOM_COST_HEADER)
            .or_else(|| headers.get(CUSTOM_COST_HEADER_ALIAS))
            .map(|v| Self::parse_bytes(v.as_bytes()))
    }

    /// The price to charge: `model_price` (the model's own, if known; nothing otherwise) with
    /// the rates this custom cost sets replaced.
    pub fn apply_to(&self, model_price: Option<Price>) -> Price {
        let mut price = model_price.unwrap_or(Price::FREE);
        if let Some(per_token) = self.per_token_in {
            price.input = per_token * TOKENS_PER_PRICE_UNIT;
            price.cached_input = None;
            price.cache_write = None;
        }
        if let Some(per_token) = self.per_token_out {
            price.output = per_token * TOKENS_PER_PRICE_UNIT;
            price.reasoning = None;
        }
        price
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use portcullis_core::Usage;

    use super::*;
    use crate::price::cost;

    fn err(text: &str) -> String {
        CustomCost::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_cloudflares_format() {
        let c =
            CustomCost::parse(r#"{"per_token_in": 0.000001, "per_token_out": 0.000002}"#).unwrap();
        assert_eq!(c.per_token_in, Some(0.000_001));
        assert_eq!(c.per_token_out, Some(0.000_002));
        let only_out = CustomCost::parse(r#" {"per_token_out": 0} "#).unwrap();
        assert_eq!(only_out.per_token_in, None);
        assert_eq!(only_out.per_token_out, Some(0.0));
        assert_eq!(
            CustomCost::parse(r#"{"per_token_in": 1e-6}"#)
                .unwrap()
                .per_token_in,
            Some(1e-6)
        );
    }

    #[test]
    fn refuses_everything_else_precisely() {
        assert!(err("").starts_with("the custom cost is not valid JSON: EOF"));
        assert!(err("{\"per_token_in\": 1,}").starts_with("the custom cost is not valid JSON"));
        assert!(err("0.5").ends_with("got a number"));
        assert!(err("[1]").ends_with("got an array"));
        assert_eq!(
            err(r#"{"per_token_in": 1, "per_token_total": 2}"#),
            "unknown field `per_token_total` in the custom cost: expected `per_token_in` and/or `per_token_out`"
        );
        assert_eq!(
            err(r#"{"per_token_in": 1, "per_token_in": 2}"#),
            "field `per_token_in` appears more than once in the custom cost"
        );
        assert_eq!(
            err(r#"{"per_token_in": "0.1"}"#),
            "`per_token_in` must be a number of dollars per token, got a string"
        );
        assert_eq!(
            err(r#"{"per_token_out": null}"#),
            "`per_token_out` must be a number of dollars per token, got null"
        );
        assert_eq!(
            err(r#"{"per_token_out": -0.5}"#),
            "`per_token_out` must not be negative, got -0.5"
        );
        // JSON has no NaN or infinity literals; numbers beyond f64 are refused by the parser.
        assert!(err(r#"{"per_token_in": NaN}"#).starts_with("the custom cost is not valid JSON"));
        assert!(
            err(r#"{"per_token_in": 1e400}"#).contains("number out of range"),
            "{}",
            err(r#"{"per_token_in": 1e400}"#)
        );
        assert_eq!(
            err("{}"),
            "the custom cost needs at least one of `per_token_in` and `per_token_out`"
        );
        assert_eq!(
            CustomCost::parse_bytes(&[b'{', 0xff, b'}']).unwrap_err(),
            CustomCostError::NotText
        );
    }

    #[test]
    fn the_primary_header_wins_over_the_alias() {
        let mut h = HeaderMap::new();
        assert!(CustomCost::from_headers(&h).is_none());
        h.insert(
            CUSTOM_COST_HEADER_ALIAS,
            HeaderValue::from_static(r#"{"per_token_in": 0.5}"#),
        );
        assert_eq!(
            CustomCost::from_headers(&h)
                .and_then(Result::ok)
                .and_then(|c| c.per_token_in),
            Some(0.5)
        );
        h.insert(
            CUSTOM_COST_HEADER,
            HeaderValue::from_static(r#"{"per_token_in": 0.25}"#),
        );
        assert_eq!(
            CustomCost::from_headers(&h)
                .and_then(Result::ok)
                .and_then(|c| c.per_token_in),
            Some(0.25)
        );
        h.insert(CUSTOM_COST_HEADER, HeaderValue::from_static("nope"));
        assert!(matches!(
            CustomCost::from_headers(&h),
            Some(Err(CustomCostError::Json(_)))
        ));
    }

    #[test]
    fn applying_replaces_whole_sides() {
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 400,
            cached_input_tokens: 600,
            cache_write_input_tokens: 100,
            reasoning_tokens: 300,
        };
        let model = Price::new(3.0, 15.0)
            .with_cached_input(0.3)
            .with_cache_write(3.75)
            .with_reasoning(20.0);
        // Both sides custom: 1,000 in × $0.000001 + 400 out × $0.000002 = $0.001 + $0.0008.
        let both =
            CustomCost::parse(r#"{"per_token_in": 0.000001, "per_token_out": 0.000002}"#).unwrap();
        let p = both.apply_to(Some(model));
        assert!((cost(&usage, &p) - 0.0018).abs() < 1e-15);
        // Only output custom: input keeps the model's split rates.
        // 300 plain × 3 + 600 × 0.3 + 100 × 3.75 = 900 + 180 + 375 = 1,455 $/M = $0.001455;
        // 400 out × $0.000002 = $0.0008. Total $0.002255.
        let out_only = CustomCost::parse(r#"{"per_token_out": 0.000002}"#).unwrap();
        let p = out_only.apply_to(Some(model));
        assert!((cost(&usage, &p) - 0.002_255).abs() < 1e-15);
        // Unknown model: the side left out costs nothing. 1,000 × $0.000001 = $0.001.
        let in_only = CustomCost::parse(r#"{"per_token_in": 0.000001}"#).unwrap();
        let p = in_only.apply_to(None);
        assert!((cost(&usage, &p) - 0.001).abs() < 1e-15);
    }
}
