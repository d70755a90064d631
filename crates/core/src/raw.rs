//! [`RawJson`]: JSON the gateway carries without interpreting it (tool schemas, provider
//! parameters it does not know, structured-output schemas), kept as the text it was received
//! in rather than as a tree of values.
//!
//! A `serde_json::Value` tree costs many times the bytes of its text (every number, string
//! and object is its own allocation); a request can carry megabytes of such JSON, so the
//! canonical model holds it raw and writes it back out verbatim.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value kept as its text (valid JSON, as received or as serialized).
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// A copy of a borrowed raw value.
    pub fn from_raw(raw: &RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// The value serialized as JSON text.
    pub fn from_value(value: &Value) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Self(raw),
            // A `Value` always serializes; `null` keeps the type total.
            Err(_) => Self::null(),
        }
    }

    /// JSON text the caller vouches for; `None` when it is not valid JSON.
    pub fn from_string(text: String) -> Option<Self> {
        RawValue::from_string(text).ok().map(Self)
    }

    /// `null`.
    pub fn null() -> Self {
        Self::from_string("null".to_owned()).unwrap_or_else(|| Self::from_value(&Value::Null))
    }

    /// The value parsed into a tree, for code that must look inside it.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }

    /// Whether the text is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.get().trim() == "null"
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}

impl From<&Value> for RawJson {
    fn from(value: &Value) -> Self {
        Self::from_value(value)
    }
}

/// Two raw values are equal when they mean the same JSON (whitespace and key order aside).
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_compares_by_meaning() {
        let a: RawJson = serde_json::from_str(r#"{"b": [1, 2], "a": "x"}"#).unwrap();
        assert_eq!(a.get(), r#"{"b": [1, 2], "a": "x"}"#);
        let b = RawJson::from_value(&serde_json::json!({"a": "x", "b": [1, 2]}));
        assert_eq!(a, b);
        assert_ne!(a, RawJson::null());
        assert!(RawJson::null().is_null());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"b": [1, 2], "a": "x"}"#
        );
        assert_eq!(format!("{a:?}"), a.get());
        assert!(RawJson::from_string("{".to_owned()).is_none());
    }
}
