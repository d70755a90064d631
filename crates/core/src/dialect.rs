//! Wire dialects and the dialect-specific fields the canonical model carries through untouched.

use std::collections::BTreeMap;

use crate::raw::RawJson;

/// An API dialect: the JSON shapes a client speaks to the gateway, or a provider speaks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions / Embeddings, spoken by OpenAI and every OpenAI-compatible provider.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl Dialect {
    /// The dialect's name as it appears in logs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }
}

/// Fields of a request or object that the canonical model has no place for.
///
/// They are forwarded verbatim when the upstream speaks the same dialect they were received
/// in (so new provider parameters work without a gateway release), and dropped when the
/// request is translated into another dialect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// The dialect the fields were received in; `None` when there are none.
    pub dialect: Option<Dialect>,
    /// The fields, by name, each kept as the JSON received.
    pub fields: BTreeMap<String, RawJson>,
}

impl Extras {
    /// Extras received in `dialect`.
    pub fn new<V: Into<RawJson>>(
        dialect: Dialect,
        fields: impl IntoIterator<Item = (String, V)>,
    ) -> Self {
        Self {
            dialect: Some(dialect),
            fields: fields.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }

    /// The fields, if they were received in `dialect`.
    pub fn for_dialect(&self, dialect: Dialect) -> Option<&BTreeMap<String, RawJson>> {
        match self.dialect {
            Some(d) if d == dialect && !self.fields.is_empty() => Some(&self.fields),
            _ => None,
        }
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}
