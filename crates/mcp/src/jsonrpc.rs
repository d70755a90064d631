//! JSON-RPC 2.0 messages as MCP carries them: one request, notification or response per
//! message (MCP has no batches since 2025-06-18). Parameters and results stay raw JSON text
//! ([`RawValue`]): the gateway forwards what it does not need to understand exactly as it was
//! sent, fields of protocol versions newer than it included, and parses only what it rewrites.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Invalid JSON was received (`-32700`).
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (`-32600`).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available (`-32601`).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters, an unknown or refused tool (`-32602`).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error (`-32603`).
pub const INTERNAL_ERROR: i64 = -32603;
/// An upstream server failed, timed out or is unavailable (implementation-defined server
/// error range).
pub const UPSTREAM_ERROR: i64 = -32001;
/// A limit refused the request (implementation-defined server error range).
pub const RATE_LIMITED: i64 = -32029;

/// A request id: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// More about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

impl ErrorObject {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// With `data`.
    pub fn with_data(mut self, data: &impl Serialize) -> Self {
        self.data = serde_json::value::to_raw_value(data).ok();
        self
    }
}

/// A request: a method call that expects a response.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its id.
    pub id: Id,
    /// The method.
    pub method: String,
    /// Its parameters, as sent.
    pub params: Option<Box<RawValue>>,
}

/// A notification: a method call without a response.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The method.
    pub method: String,
    /// Its parameters, as sent.
    pub params: Option<Box<RawValue>>,
}

/// A response: a result or an error for the request with the same id. The id is `None` only
/// for an error about a request whose id could not be read.
#[derive(Debug, Clone)]
pub struct Response {
    /// The request's id.
    pub id: Option<Id>,
    /// What it came to.
    pub outcome: Outcome,
}

/// A request's outcome.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The result, as sent.
    Result(Box<RawValue>),
    /// An error.
    Error(ErrorObject),
}

/// Any message.
#[derive(Debug, Clone)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

/// Why a message could not be read: what the peer is told, as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (`-32700`).
    #[error("Parse error: the body is not valid JSON")]
    NotJson,
    /// JSON, but not a JSON-RPC 2.0 message (`-32600`).
    #[error("Invalid Request: {0}")]
    NotJsonRpc(&'static str),
}

impl ParseError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::NotJson => PARSE_ERROR,
            ParseError::NotJsonRpc(_) => INVALID_REQUEST,
        }
    }
}

/// A message as read, before its shape is checked.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

/// A member that is present, `null` included (a plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl Message {
    /// Reads one message.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            None => return Err(ParseError::NotJson),
            Some(b'[') => {
                // Valid JSON or not, an array is a batch, which MCP does not have.
                return if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                    Err(ParseError::NotJsonRpc("batches are not supported"))
                } else {
                    Err(ParseError::NotJson)
                };
            }
            Some(b'{') => {}
            Some(_) => {
                return if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                    Err(ParseError::NotJsonRpc("a message is a JSON object"))
                } else {
                    Err(ParseError::NotJson)
                };
            }
        }
        let wire: Wire<'_> = match serde_json::from_slice(bytes) {
            Ok(w) => w,
            Err(e) if e.is_data() => {
                return Err(ParseError::NotJsonRpc("a member has the wrong type"));
            }
            Err(_) => return Err(ParseError::NotJson),
        };
        if wire.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(ParseError::NotJsonRpc("`jsonrpc` must be \"2.0\""));
        }
        let id = match wire.id {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(
                serde_json::from_str::<Id>(raw.get())
                    .map_err(|_| ParseError::NotJsonRpc("`id` must be a string or an integer"))?,
            ),
        };
        match (wire.method, wire.result, wire.error) {
            (Some(method), None, None) => {
                if let Some(p) = &wire.params
                    && !matches!(p.get().as_bytes().first(), Some(b'{' | b'['))
                {
                    return Err(ParseError::NotJsonRpc("`params` must be an object"));
                }
                Ok(match (id, wire.id.is_some()) {
                    (Some(id), _) => Message::Request(Request {
                        id,
                        method,
                        params: wire.params,
                    }),
                    (None, true) => return Err(ParseError::NotJsonRpc("`id` must not be null")),
                    (None, false) => Message::Notification(Notification {
                        method,
                        params: wire.params,
                    }),
                })
            }
            (None, Some(result), None) => match id {
                Some(id) => Ok(Message::Response(Response {
                    id: Some(id),
                    outcome: Outcome::Result(result),
                })),
                None => Err(ParseError::NotJsonRpc("a result needs the request's `id`")),
            },
            (None, None, Some(error)) => Ok(Message::Response(Response {
                id,
                outcome: Outcome::Error(error),
            })),
            (None, None, None) => Err(ParseError::NotJsonRpc(
                "a message has a `method`, a `result` or an `error`",
            )),
            _ => Err(ParseError::NotJsonRpc(
                "a message has only one of `method`, `result` and `error`",
            )),
        }
    }

    /// The message as JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(br#"{"jsonrpc":"2.0""#);
        match self {
            Message::Request(r) => {
                out.extend_from_slice(br#","id":"#);
                write_json(&mut out, &r.id);
                write_method(&mut out, &r.method, r.params.as_deref());
            }
            Message::Notification(n) => write_method(&mut out, &n.method, n.params.as_deref()),
            Message::Response(r) => {
                out.extend_from_slice(br#","id":"#);
                match &r.id {
                    Some(id) => write_json(&mut out, id),
                    None => out.extend_from_slice(b"null"),
                }
                match &r.outcome {
                    Outcome::Result(result) => {
                        out.extend_from_slice(br#","result":"#);
                        out.extend_from_slice(result.get().as_bytes());
                    }
                    Outcome::Error(error) => {
                        out.extend_from_slice(br#","error":"#);
                        write_json(&mut out, error);
                    }
                }
            }
        }
        out.push(b'}');
        out
    }
}

fn write_method(out: &mut Vec<u8>, method: &str, params: Option<&RawValue>) {
    out.extend_from_slice(br#","method":"#);
    write_json(out, method);
    if let Some(p) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(p.get().as_bytes());
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Writing to a Vec fails only for values that cannot be JSON, which these are not.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

impl Response {
    /// A result for `id`.
    pub fn result(id: Id, result: Box<RawValue>) -> Self {
        Self {
            id: Some(id),
            outcome: Outcome::Result(result),
        }
    }

    /// An error for `id` (`None`: the request's id is unknown).
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Self {
            id,
            outcome: Outcome::Error(error),
        }
    }

    /// The response as JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        Message::Response(self.clone()).to_bytes()
    }
}

/// `value` as raw JSON text.
pub fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object())
}

/// `{}`.
pub fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| Box::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, ParseError> {
        Message::parse(text.as_bytes())
    }

    #[test]
    fn the_three_kinds_of_message_round_trip() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        ] {
            let m = parse(text).unwrap();
            assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), text);
        }
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"x","params":null}"#),
            Ok(Message::Notification(_))
        ));
    }

    #[test]
    fn what_is_not_json_or_not_json_rpc_is_told_apart() {
        assert_eq!(parse("").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(parse("{nope").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(parse("[1,").unwrap_err().code(), PARSE_ERROR);
        for text in [
            "[]",
            "42",
            "\"text\"",
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","method":7}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":3}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
        ] {
            assert_eq!(parse(text).unwrap_err().code(), INVALID_REQUEST, "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_message_or_an_error_never_a_panic(bytes: Vec<u8>) {
            let _ = Message::parse(&bytes);
        }

        #[test]
        fn any_string_id_and_method_round_trip(id: String, method: String) {
            let m = Message::Request(Request { id: Id::String(id.clone()), method: method.clone(), params: None });
            let Message::Request(back) = Message::parse(&m.to_bytes()).unwrap() else {
                panic!("a request");
            };
            proptest::prop_assert_eq!(back.id, Id::String(id));
            proptest::prop_assert_eq!(back.method, method);
        }
    }
}
