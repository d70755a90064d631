//! Strict JSON checks the decoders do not make: a request body whose objects repeat a key.
//!
//! `{"model":"a","model":"b"}` is valid JSON to most parsers, but they disagree on what it
//! means (the first value, the last, an error): a gateway that reads one `model` while the
//! upstream or an audit tool reads the other is a parser differential. Bodies are therefore
//! checked once, before they are decoded, in one streaming pass over the bytes that builds no
//! tree: each object's keys are compared in a small inline set (a hash set only for objects
//! with many keys), strings are borrowed from the input unless they hold escapes, and nothing
//! else is kept. Keys are compared after unescaping, so `"mod\u0065l"` repeats `"model"`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Keys compared pairwise before a hash set takes over.
const INLINE_KEYS: usize = 16;

/// A key that appears twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The repeated key, unescaped.
    pub key: String,
    /// Where the object is: `.` for the top level, else a path such as `messages[0]`.
    pub path: String,
}

/// Longest stretch of a key or path shown in a message, in characters.
const SHOWN_CHARS: usize = 64;

impl fmt::Display for DuplicateKey {
    /// ``duplicate key `model` `` or ``duplicate key `role` in `messages[1]` ``; control
    /// characters escaped and long names cut, so the message is safe to show and store.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("duplicate key `")?;
        shown(f, &self.key)?;
        if self.path != "." {
            f.write_str("` in `")?;
            shown(f, &self.path)?;
        }
        f.write_str("`")
    }
}

fn shown(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_CHARS {
            return f.write_str("…");
        }
        if c.is_control() || c == '`' {
            write!(f, "{}", c.escape_unicode())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// The first key repeated within one object of `body`, at any depth.
///
/// Returns `None` when every object's keys are distinct, and when `body` stops being valid
/// JSON before a key repeats (the decoder then reports that precisely).
pub fn duplicate_key(body: &[u8]) -> Option<DuplicateKey> {
    scan(body).err().flatten()
}

/// One pass over `body`: `Ok` when it is valid JSON without repeated keys (exactly when
/// `serde_json` would parse it), `Err(Some(..))` at the first repeated key, `Err(None)` when
/// it is not valid JSON.
fn scan(body: &[u8]) -> Result<(), Option<DuplicateKey>> {
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let checked = Check { found: &mut found }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    let Err(_) = checked else {
        return Ok(());
    };
    let Some(key) = found.key else {
        return Err(None);
    };
    let mut path = String::new();
    for segment in found.path.iter().rev() {
        match segment {
            Segment::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Segment::Index(i) => {
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    Err(Some(DuplicateKey { key, path }))
}

/// What the pass found; the path is collected while the error unwinds, innermost first.
#[derive(Default)]
struct Found {
    key: Option<String>,
    path: Vec<Segment>,
}

enum Segment {
    Key(String),
    Index(usize),
}

/// Checks one value (and everything inside it).
struct Check<'f> {
    found: &'f mut Found,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            match seq.next_element_seed(Check {
                found: &mut *self.found,
            }) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if self.found.key.is_some() {
                        self.found.path.push(Segment::Index(index));
                    }
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.contains(&key) {
                self.found.key = Some(key.into_owned());
                return Err(de::Error::custom("duplicate key"));
            }
            if let Err(e) = map.next_value_seed(Check {
                found: &mut *self.found,
            }) {
                if self.found.key.is_some() {
                    self.found.path.push(Segment::Key(key.into_owned()));
                }
                return Err(e);
            }
            keys.push(key);
        }
        Ok(())
    }
}

/// One object's keys so far: compared pairwise while few (on the stack), hashed once many.
#[derive(Default)]
struct Keys<'de> {
    few: [Cow<'de, str>; INLINE_KEYS],
    len: usize,
    many: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> Keys<'de> {
    /// Whether `key` was seen.
    fn contains(&self, key: &str) -> bool {
        match &self.many {
            Some(many) => many.contains(key),
            None => self.few[..self.len].iter().any(|k| k == key),
        }
    }

    /// Records `key` (not seen before).
    fn push(&mut self, key: Cow<'de, str>) {
        if let Some(many) = &mut self.many {
            many.insert(key);
            return;
        }
        match self.few.get_mut(self.len) {
            Some(slot) => {
                *slot = key;
                self.len += 1;
            }
            None => {
                let mut many: HashSet<Cow<'de, str>> = HashSet::with_capacity(INLINE_KEYS * 4);
                many.extend(self.few.iter_mut().map(std::mem::take));
                many.insert(key);
                self.many = Some(many);
            }
        }
    }
}

/// A key, borrowed from the input unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn dup(body: &str) -> Option<(String, String)> {
        duplicate_key(body.as_bytes()).map(|d| (d.key, d.path))
    }

    #[test]
    fn finds_repeated_keys_at_any_depth() {
        assert_eq!(
            dup(r#"{"model":"a","model":"b"}"#),
            Some(("model".into(), ".".into()))
        );
        assert_eq!(
            dup(
                r#"{"model":"a","messages":[{"role":"user"},{"role":"user","content":"x","role":"system"}]}"#
            ),
            Some(("role".into(), "messages[1]".into()))
        );
        assert_eq!(
            dup(r#"{"a":{"b":{"c":1,"c":2}}}"#),
            Some(("c".into(), "a.b".into()))
        );
        assert_eq!(
            dup(r#"{"a":[[1,{"x":{}}],[{"y":1,"y":1}]]}"#),
            Some(("y".into(), "a[1][0]".into()))
        );
        // Compared after unescaping.
        assert_eq!(
            dup(r#"{"model":"a","mod\u0065l":"b"}"#),
            Some(("model".into(), ".".into()))
        );
        // Many keys: the hash set takes over.
        for n in [15, 16, 17, 40] {
            let mut many: String = (0..n).map(|i| format!("\"k{i}\":{i},")).collect();
            many.push_str("\"k7\":0");
            assert_eq!(
                dup(&format!("{{{many}}}")),
                Some(("k7".into(), ".".into())),
                "{n}"
            );
            let last = format!("\"k{}\":0", n - 1);
            let mut many: String = (0..n).map(|i| format!("\"k{i}\":{i},")).collect();
            many.push_str(&last);
            assert_eq!(
                dup(&format!("{{{many}}}")).map(|d| d.0),
                Some(format!("k{}", n - 1))
            );
        }
    }

    #[test]
    fn accepts_distinct_keys_and_leaves_invalid_json_to_the_decoder() {
        for ok in [
            r#"{"model":"a","messages":[{"role":"user"},{"role":"user"}]}"#,
            r#"{"a":{"a":{"a":1}}}"#,
            r#"[{"x":1},{"x":1}]"#,
            r#""model""#,
            "null",
            r#"{"Model":1,"model":2}"#,
        ] {
            assert_eq!(scan(ok.as_bytes()), Ok(()), "{ok}");
        }
        for invalid in ["", "{", r#"{"a":1,"b""#, "[1,]", r#"{"a":1} x"#, "\u{0}"] {
            assert_eq!(scan(invalid.as_bytes()), Err(None), "{invalid}");
        }
        // Nesting deeper than serde_json allows is refused the same way.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert_eq!(scan(deep.as_bytes()), Err(None));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(100), "}".repeat(100));
        assert!(serde_json::from_str::<Value>(&deep).is_ok());
        assert_eq!(scan(deep.as_bytes()), Ok(()));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-c\\\\\"\u{0}-\u{1f}é😀]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-d\u{0}\"\\\\é]{0,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `v` as JSON text with a repeated key `key` added to its `nth` object (counted in
    /// document order, wrapping around); `None` when it has no object.
    fn with_repeat(v: &Value, key: &str, nth: usize) -> Option<String> {
        fn count(v: &Value) -> usize {
            match v {
                Value::Array(a) => a.iter().map(count).sum(),
                Value::Object(m) => 1 + m.values().map(count).sum::<usize>(),
                _ => 0,
            }
        }
        fn write(v: &Value, key: &str, target: &mut usize, out: &mut String) {
            match v {
                Value::Array(a) => {
                    out.push('[');
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(x, key, target, out);
                    }
                    out.push(']');
                }
                Value::Object(m) => {
                    out.push('{');
                    let here = *target == 0;
                    *target = target.wrapping_sub(1);
                    let mut first = true;
                    if here {
                        let k = serde_json::to_string(key).unwrap_or_default();
                        out.push_str(&format!("{k}:1,{k}:2"));
                        first = false;
                    }
                    for (k, x) in m {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        out.push_str(&serde_json::to_string(k).unwrap_or_default());
                        out.push(':');
                        write(x, key, target, out);
                    }
                    out.push('}');
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let objects = count(v);
        if objects == 0 {
            return None;
        }
        let mut target = nth % objects;
        let mut out = String::new();
        write(v, key, &mut target, &mut out);
        Some(out)
    }

    /// A corrupted copy of `text`: one byte replaced, or the text cut short.
    fn corrupt(text: &str, at: usize, byte: u8, cut: bool) -> Vec<u8> {
        let mut b = text.as_bytes().to_vec();
        if b.is_empty() {
            return vec![byte];
        }
        let at = at % b.len();
        if cut {
            b.truncate(at);
        } else {
            b[at] = byte;
        }
        b
    }

    proptest! {
        /// Documents without repeated keys pass, compact or pretty.
        #[test]
        fn documents_without_repeated_keys_pass(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(scan(text.as_bytes()), Ok(()));
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(scan(pretty.as_bytes()), Ok(()));
        }

        /// A key repeated in any object, at any depth, is found and named.
        #[test]
        fn a_key_repeated_anywhere_is_found(
            v in json_value(),
            key in "[a-d\u{0}é\"]{1,3}",
            nth in any::<usize>(),
        ) {
            let text = with_repeat(&v, &key, nth)
                .unwrap_or_else(|| with_repeat(&serde_json::json!({"v": v}), &key, 0).unwrap());
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
            let found = duplicate_key(text.as_bytes());
            prop_assert_eq!(found.map(|d| d.key), Some(key), "{}", text);
        }

        /// On almost-JSON (a valid document with one byte changed or cut short) and on random
        /// bytes, the pass accepts exactly what serde_json accepts, unless it found a repeat.
        #[test]
        fn acceptance_matches_serde_json(
            v in json_value(),
            at in any::<usize>(),
            byte in prop::sample::select(b"{}[]\":,\\ 0e-.tnu\x00\xc3\xff".to_vec()),
            cut in any::<bool>(),
            random in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let text = serde_json::to_string(&v).unwrap();
            for input in [corrupt(&text, at, byte, cut), random.clone()] {
                let serde_ok = serde_json::from_slice::<Value>(&input).is_ok();
                match scan(&input) {
                    Ok(()) => prop_assert!(serde_ok, "{:?}", String::from_utf8_lossy(&input)),
                    Err(None) => prop_assert!(!serde_ok, "{:?}", String::from_utf8_lossy(&input)),
                    Err(Some(_)) => {}
                }
            }
        }
    }

    /// `cargo test -p portcullis-dialects --release -- --ignored --nocapture strict::tests::speed`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn speed_on_a_13_mib_body() {
        use std::time::Instant;
        let text = "lorem ipsum dolor sit amet, \"quoted\" \\u00e9 ".repeat(200);
        let mut messages = Vec::new();
        let mut total = 0;
        while total < 13 * 1024 * 1024 {
            messages.push(serde_json::json!({"role": "user", "content": [
                {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}
            ], "name": "n"}));
            total += text.len() + 100;
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "model": "gpt-4o", "max_tokens": 10, "messages": messages,
        }))
        .unwrap();
        let one_string = serde_json::to_vec(&serde_json::json!({
            "model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(13 << 20)}],
        }))
        .unwrap();
        for (name, body) in [("many messages", &body), ("one long string", &one_string)] {
            let mb = body.len() as f64 / 1048576.0;
            let runs = 20;
            let started = Instant::now();
            for _ in 0..runs {
                assert_eq!(scan(body), Ok(()));
            }
            let ours = started.elapsed() / runs;
            let started = Instant::now();
            for _ in 0..runs {
                serde_json::from_slice::<serde::de::IgnoredAny>(body).unwrap();
            }
            let ignored = started.elapsed() / runs;
            let started = Instant::now();
            for _ in 0..runs {
                serde_json::from_slice::<Value>(body).unwrap();
            }
            let tree = started.elapsed() / runs;
            println!(
                "{name}: {mb:.1} MiB: check {ours:?} ({:.0} MiB/s); serde IgnoredAny {ignored:?}; Value tree {tree:?}",
                mb / ours.as_secs_f64()
            );
        }
    }
}
