//! AWS event-stream framing (`application/vnd.amazon.eventstream`): the binary transport of
//! Bedrock's `ConverseStream` (and every other AWS streaming API), decoded incrementally and
//! encoded.
//!
//! A stream is a sequence of self-delimiting messages, all integers big-endian:
//!
//! ```text
//! total length (u32) │ headers length (u32) │ prelude CRC32 (of the 8 bytes before)
//! headers (headers length bytes) │ payload │ message CRC32 (of every byte before it)
//! ```
//!
//! A header is a name (u8 length, then UTF-8 bytes), a type byte and a value of that type:
//! `0` true, `1` false (no value bytes), `2` byte (i8), `3` short (i16), `4` int (i32), `5` long
//! (i64), `6` bytes (u16 length, then the bytes), `7` string (u16 length, then UTF-8), `8`
//! timestamp (i64 milliseconds since the Unix epoch), `9` UUID (16 bytes). The checksums are
//! CRC-32 as in gzip (IEEE 802.3). A message says what it is in its `:message-type` header:
//! `event` (with `:event-type`), `exception` (a modelled error, with `:exception-type`) or
//! `error` (with `:error-code` and `:error-message`); `:content-type` names the payload's format.
//!
//! [`MessageDecoder`] takes bytes in arbitrary chunks and yields each message once it is whole and
//! both its checksums hold; a message larger than its limit is refused as soon as its prelude
//! arrives, before it is buffered. Nothing here panics on input: every malformation is an
//! [`EventStreamError`], after which the decoder refuses further input (a stream cannot be
//! resynchronised once a length is wrong). [`EventStreamFramer`] is the [`Framer`] over it, so
//! the relay reads an event stream exactly as it reads server-sent events: each message becomes a
//! [`Frame`] whose `event` is the member of the operation's stream union it carries (the
//! `:event-type` of an event, the `:exception-type` of an exception, the `:error-code` of an
//! error), whose payload is the message's payload and whose raw bytes are the whole message, from
//! which [`Message::from_frame`] reads back every header. [`Message::encode`] writes messages (the
//! Bedrock mock in `portcullis-test-support` and the tests use it).

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{Frame, Framer, FramingError};

/// The media type of an AWS event stream.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The default bound on one message's total length: 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Total length, headers length and the prelude's checksum.
const PRELUDE_LEN: usize = 12;
/// The message checksum at the end.
const CRC_LEN: usize = 4;
/// A message with no headers and no payload.
const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + CRC_LEN;

const TYPE_TRUE: u8 = 0;
const TYPE_FALSE: u8 = 1;
const TYPE_BYTE: u8 = 2;
const TYPE_SHORT: u8 = 3;
const TYPE_INT: u8 = 4;
const TYPE_LONG: u8 = 5;
const TYPE_BYTES: u8 = 6;
const TYPE_STRING: u8 = 7;
const TYPE_TIMESTAMP: u8 = 8;
const TYPE_UUID: u8 = 9;

/// A header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2: one signed byte.
    Byte(i8),
    /// Type 3: a 16-bit integer.
    Short(i16),
    /// Type 4: a 32-bit integer.
    Int(i32),
    /// Type 5: a 64-bit integer.
    Long(i64),
    /// Type 6: at most 65 535 bytes.
    Bytes(Bytes),
    /// Type 7: UTF-8 text of at most 65 535 bytes.
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9: a UUID's 16 bytes.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The value as text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes the value takes on the wire after its name: type byte and value.
    fn wire_len(&self) -> usize {
        1 + match self {
            HeaderValue::Bool(_) => 0,
            HeaderValue::Byte(_) => 1,
            HeaderValue::Short(_) => 2,
            HeaderValue::Int(_) => 4,
            HeaderValue::Long(_) | HeaderValue::Timestamp(_) => 8,
            HeaderValue::Bytes(b) => 2 + b.len(),
            HeaderValue::String(s) => 2 + s.len(),
            HeaderValue::Uuid(_) => 16,
        }
    }
}

impl From<bool> for HeaderValue {
    fn from(b: bool) -> Self {
        HeaderValue::Bool(b)
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::String(s.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::String(s)
    }
}

/// One header: a name and a typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name (at most 255 bytes of UTF-8).
    pub name: String,
    /// The value.
    pub value: HeaderValue,
}

/// What a message is, from its `:message-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `event`: a member of the stream, named by `:event-type`.
    Event,
    /// `exception`: a modelled error, named by `:exception-type`, its payload the error's body.
    Exception,
    /// `error`: an unmodelled error, described by `:error-code` and `:error-message`.
    Error,
}

/// One event-stream message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The headers, in wire order.
    pub headers: Vec<Header>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// A message with `payload` and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// The message with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<HeaderValue>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// An `event` message of type `event_type` with a JSON payload, as AWS services send them.
    pub fn event(event_type: &str, payload: impl Into<Bytes>) -> Self {
        Self::new(payload)
            .with_header(":event-type", event_type)
            .with_header(":content-type", "application/json")
            .with_header(":message-type", "event")
    }

    /// An `exception` message of type `exception_type` with a JSON payload (`{"message": …}`).
    pub fn exception(exception_type: &str, payload: impl Into<Bytes>) -> Self {
        Self::new(payload)
            .with_header(":exception-type", exception_type)
            .with_header(":content-type", "application/json")
            .with_header(":message-type", "exception")
    }

    /// An `error` message: `code` and `message` in headers, no payload.
    pub fn error(code: &str, message: &str) -> Self {
        Self::new(Bytes::new())
            .with_header(":error-code", code)
            .with_header(":error-message", message)
            .with_header(":message-type", "error")
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// The first header named `name`, when it is a string.
    pub fn str_header(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// What the message is (`None` without a `:message-type` or with an unknown one).
    pub fn message_type(&self) -> Option<MessageType> {
        match self.str_header(":message-type")? {
            "event" => Some(MessageType::Event),
            "exception" => Some(MessageType::Exception),
            "error" => Some(MessageType::Error),
            _ => None,
        }
    }

    /// `:event-type`.
    pub fn event_type(&self) -> Option<&str> {
        self.str_header(":event-type")
    }

    /// `:exception-type`.
    pub fn exception_type(&self) -> Option<&str> {
        self.str_header(":exception-type")
    }

    /// `:content-type`.
    pub fn content_type(&self) -> Option<&str> {
        self.str_header(":content-type")
    }

    /// `:error-code` (of an `error` message).
    pub fn error_code(&self) -> Option<&str> {
        self.str_header(":error-code")
    }

    /// `:error-message` (of an `error` message).
    pub fn error_message(&self) -> Option<&str> {
        self.str_header(":error-message")
    }

    /// The member of the stream the message carries: its `:event-type`, `:exception-type` or
    /// `:error-code`, as its `:message-type` says (without one, the first of them it has).
    pub fn kind(&self) -> Option<&str> {
        match self.message_type() {
            Some(MessageType::Event) => self.event_type(),
            Some(MessageType::Exception) => self.exception_type(),
            Some(MessageType::Error) => self.error_code(),
            None => self
                .event_type()
                .or_else(|| self.exception_type())
                .or_else(|| self.error_code()),
        }
    }

    /// Decodes `bytes`, which must hold exactly one message, checking both checksums.
    pub fn decode(bytes: &[u8]) -> Result<Message, EventStreamError> {
        let total =
            prelude(bytes, usize::MAX)?.ok_or(EventStreamError::Truncated { have: bytes.len() })?;
        match bytes.len().cmp(&total) {
            std::cmp::Ordering::Less => Err(EventStreamError::Truncated { have: bytes.len() }),
            std::cmp::Ordering::Greater => Err(EventStreamError::TrailingBytes {
                extra: bytes.len() - total,
            }),
            std::cmp::Ordering::Equal => parse(Bytes::copy_from_slice(bytes)),
        }
    }

    /// The message a [`Frame`] cut by [`EventStreamFramer`] came from, every header included.
    pub fn from_frame(frame: &Frame) -> Result<Message, EventStreamError> {
        match prelude(&frame.raw, usize::MAX)? {
            Some(total) if total == frame.raw.len() => parse(frame.raw.clone()),
            _ => Message::decode(&frame.raw),
        }
    }

    /// The message on the wire.
    pub fn encode(&self) -> Result<Bytes, EventStreamError> {
        let mut out = BytesMut::new();
        self.encode_into(&mut out)?;
        Ok(out.freeze())
    }

    /// Appends the message on the wire to `out`; on error nothing is appended.
    pub fn encode_into(&self, out: &mut BytesMut) -> Result<(), EventStreamError> {
        let mut headers_len = 0usize;
        for h in &self.headers {
            if h.name.len() > usize::from(u8::MAX) {
                return Err(EventStreamError::HeaderNameTooLong { len: h.name.len() });
            }
            let value_len = match &h.value {
                HeaderValue::Bytes(b) => b.len(),
                HeaderValue::String(s) => s.len(),
                _ => 0,
            };
            if value_len > usize::from(u16::MAX) {
                return Err(EventStreamError::HeaderValueTooLong {
                    name: h.name.clone(),
                    len: value_len,
                });
            }
            headers_len += 1 + h.name.len() + h.value.wire_len();
        }
        let total = MIN_MESSAGE_LEN + headers_len + self.payload.len();
        let (Ok(total32), Ok(headers32)) = (u32::try_from(total), u32::try_from(headers_len))
        else {
            return Err(EventStreamError::TooLarge {
                total: total as u64,
                limit: u32::MAX as usize,
            });
        };
        let start = out.len();
        out.reserve(total);
        out.put_u32(total32);
        out.put_u32(headers32);
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32(crc);
        for h in &self.headers {
            // Both lengths were checked above.
            out.put_u8(h.name.len() as u8);
            out.put_slice(h.name.as_bytes());
            match &h.value {
                HeaderValue::Bool(true) => out.put_u8(TYPE_TRUE),
                HeaderValue::Bool(false) => out.put_u8(TYPE_FALSE),
                HeaderValue::Byte(v) => {
                    out.put_u8(TYPE_BYTE);
                    out.put_i8(*v);
                }
                HeaderValue::Short(v) => {
                    out.put_u8(TYPE_SHORT);
                    out.put_i16(*v);
                }
                HeaderValue::Int(v) => {
                    out.put_u8(TYPE_INT);
                    out.put_i32(*v);
                }
                HeaderValue::Long(v) => {
                    out.put_u8(TYPE_LONG);
                    out.put_i64(*v);
                }
                HeaderValue::Bytes(b) => {
                    out.put_u8(TYPE_BYTES);
                    out.put_u16(b.len() as u16);
                    out.put_slice(b);
                }
                HeaderValue::String(s) => {
                    out.put_u8(TYPE_STRING);
                    out.put_u16(s.len() as u16);
                    out.put_slice(s.as_bytes());
                }
                HeaderValue::Timestamp(ms) => {
                    out.put_u8(TYPE_TIMESTAMP);
                    out.put_i64(*ms);
                }
                HeaderValue::Uuid(u) => {
                    out.put_u8(TYPE_UUID);
                    out.put_slice(u);
                }
            }
        }
        out.put_slice(&self.payload);
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32(crc);
        Ok(())
    }
}

/// Why bytes are not an event stream, or a message cannot be written as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// The prelude's checksum does not match its lengths.
    #[error(
        "event-stream prelude checksum mismatch (computed {computed:#010x}, the message says {stated:#010x})"
    )]
    PreludeChecksum {
        /// CRC-32 of the two lengths as received.
        computed: u32,
        /// The checksum the message carries.
        stated: u32,
    },
    /// The message's checksum does not match its bytes.
    #[error(
        "event-stream message checksum mismatch (computed {computed:#010x}, the message says {stated:#010x})"
    )]
    MessageChecksum {
        /// CRC-32 of the message as received.
        computed: u32,
        /// The checksum the message carries.
        stated: u32,
    },
    /// The total length is below the 16 bytes of prelude and checksum.
    #[error("event-stream message length {total} is below the 16-byte minimum")]
    TooShort {
        /// The stated total length.
        total: u32,
    },
    /// The message is longer than the decoder accepts (or than a u32 can say, when encoding).
    #[error("event-stream message of {total} bytes is larger than the {limit}-byte limit")]
    TooLarge {
        /// The message's total length.
        total: u64,
        /// The limit.
        limit: usize,
    },
    /// The headers length does not fit in the message.
    #[error("event-stream headers length {headers} does not fit in a {total}-byte message")]
    HeadersLength {
        /// The stated headers length.
        headers: u32,
        /// The stated total length.
        total: u32,
    },
    /// A header could not be read.
    #[error("event-stream header {index}: {reason}")]
    MalformedHeader {
        /// Its position among the message's headers (from 0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The bytes ended inside a message.
    #[error("the event stream ended inside a message, {have} bytes into it")]
    Truncated {
        /// Bytes of the incomplete message received.
        have: usize,
    },
    /// Bytes follow the one message [`Message::decode`] was given.
    #[error("{extra} bytes follow the event-stream message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A header name longer than 255 bytes cannot be encoded.
    #[error("event-stream header name of {len} bytes is longer than 255")]
    HeaderNameTooLong {
        /// Its length.
        len: usize,
    },
    /// A string or bytes header value longer than 65 535 bytes cannot be encoded.
    #[error("event-stream header {name:?} has a value of {len} bytes, longer than 65535")]
    HeaderValueTooLong {
        /// The header's name.
        name: String,
        /// The value's length.
        len: usize,
    },
}

/// Reads and checks a prelude at the start of `bytes`: `None` while fewer than 12 bytes are
/// there, else the message's total length.
fn prelude(bytes: &[u8], limit: usize) -> Result<Option<usize>, EventStreamError> {
    let Some(p) = bytes.get(..PRELUDE_LEN) else {
        return Ok(None);
    };
    let total = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let headers = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let stated = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let computed = crc32fast::hash(&p[..8]);
    if computed != stated {
        return Err(EventStreamError::PreludeChecksum { computed, stated });
    }
    let total_len = total as usize;
    if total_len < MIN_MESSAGE_LEN {
        return Err(EventStreamError::TooShort { total });
    }
    if total_len > limit {
        return Err(EventStreamError::TooLarge {
            total: u64::from(total),
            limit,
        });
    }
    if headers as usize > total_len - MIN_MESSAGE_LEN {
        return Err(EventStreamError::HeadersLength { headers, total });
    }
    Ok(Some(total_len))
}

/// Parses one whole message whose prelude [`prelude`] accepted.
fn parse(raw: Bytes) -> Result<Message, EventStreamError> {
    let end = raw.len() - CRC_LEN;
    let stated = u32::from_be_bytes([raw[end], raw[end + 1], raw[end + 2], raw[end + 3]]);
    let computed = crc32fast::hash(&raw[..end]);
    if computed != stated {
        return Err(EventStreamError::MessageChecksum { computed, stated });
    }
    let headers_len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
    let headers_end = PRELUDE_LEN + headers_len;
    let headers = parse_headers(&raw[PRELUDE_LEN..headers_end])?;
    Ok(Message {
        headers,
        payload: raw.slice(headers_end..end),
    })
}

/// A cursor over the headers section; every read is bounded by the section.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

fn parse_headers(section: &[u8]) -> Result<Vec<Header>, EventStreamError> {
    let mut r = Reader {
        bytes: section,
        pos: 0,
    };
    let mut headers = Vec::new();
    while r.pos < section.len() {
        let index = headers.len();
        let bad = |reason: String| EventStreamError::MalformedHeader { index, reason };
        let past = || bad("runs past the end of the headers section".to_owned());
        let [name_len] = r.array::<1>().ok_or_else(past)?;
        let name = r.take(usize::from(name_len)).ok_or_else(past)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("its name is not UTF-8".to_owned()))?
            .to_owned();
        let [kind] = r.array::<1>().ok_or_else(past)?;
        let value = match kind {
            TYPE_TRUE => HeaderValue::Bool(true),
            TYPE_FALSE => HeaderValue::Bool(false),
            TYPE_BYTE => HeaderValue::Byte(i8::from_be_bytes(r.array().ok_or_else(past)?)),
            TYPE_SHORT => HeaderValue::Short(i16::from_be_bytes(r.array().ok_or_else(past)?)),
            TYPE_INT => HeaderValue::Int(i32::from_be_bytes(r.array().ok_or_else(past)?)),
            TYPE_LONG => HeaderValue::Long(i64::from_be_bytes(r.array().ok_or_else(past)?)),
            TYPE_TIMESTAMP => {
                HeaderValue::Timestamp(i64::from_be_bytes(r.array().ok_or_else(past)?))
            }
            TYPE_UUID => HeaderValue::Uuid(r.array().ok_or_else(past)?),
            TYPE_BYTES | TYPE_STRING => {
                let len = u16::from_be_bytes(r.array().ok_or_else(past)?);
                let value = r.take(usize::from(len)).ok_or_else(past)?;
                if kind == TYPE_BYTES {
                    HeaderValue::Bytes(Bytes::copy_from_slice(value))
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(value)
                            .map_err(|_| bad(format!("the value of {name:?} is not UTF-8")))?
                            .to_owned(),
                    )
                }
            }
            other => return Err(bad(format!("unknown value type {other}"))),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

/// A message decoded from a stream, with the bytes it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The message.
    pub message: Message,
    /// Its bytes as received, prelude to checksum.
    pub raw: Bytes,
}

/// Incremental decoder: feed it chunks as they arrive, however they are cut.
#[derive(Debug)]
pub struct MessageDecoder {
    buf: BytesMut,
    limit: usize,
    /// The total length of the message at the head of `buf`, once its prelude is checked.
    expected: Option<usize>,
    failed: Option<EventStreamError>,
}

impl Default for MessageDecoder {
    fn default() -> Self {
        Self::with_max_message_bytes(MAX_MESSAGE_BYTES)
    }
}

impl MessageDecoder {
    /// A decoder accepting messages of up to [`MAX_MESSAGE_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing messages longer than `limit` bytes (as soon as their prelude says so).
    pub fn with_max_message_bytes(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            limit,
            expected: None,
            failed: None,
        }
    }

    /// The largest message accepted.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Feeds a chunk, appending every message it completes to `out`. After an error the
    /// decoder stays failed: every later call returns the same error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Decoded>) -> Result<(), EventStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let result = self.drain(out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
        }
        result
    }

    /// Ends the input: an error if it stopped inside a message (or the decoder had failed).
    pub fn finish(&mut self) -> Result<(), EventStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let e = EventStreamError::Truncated {
            have: self.buf.len(),
        };
        self.failed = Some(e.clone());
        Err(e)
    }

    fn drain(&mut self, out: &mut Vec<Decoded>) -> Result<(), EventStreamError> {
        loop {
            let total = match self.expected {
                Some(t) => t,
                None => match prelude(&self.buf, self.limit)? {
                    Some(t) => {
                        self.expected = Some(t);
                        t
                    }
                    None => return Ok(()),
                },
            };
            if self.buf.len() < total {
                return Ok(());
            }
            self.expected = None;
            let raw = self.buf.split_to(total).freeze();
            let message = parse(raw.clone())?;
            out.push(Decoded { message, raw });
        }
    }
}

/// The [`Framer`] for AWS event streams: one [`Frame`] per message (see the module doc).
#[derive(Debug, Default)]
pub struct EventStreamFramer {
    decoder: MessageDecoder,
    decoded: Vec<Decoded>,
}

impl EventStreamFramer {
    /// A framer accepting messages of up to [`MAX_MESSAGE_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer refusing messages longer than `limit` bytes.
    pub fn with_max_frame_bytes(limit: usize) -> Self {
        Self {
            decoder: MessageDecoder::with_max_message_bytes(limit),
            decoded: Vec::new(),
        }
    }

    fn framing_error(&self, e: EventStreamError) -> FramingError {
        match e {
            EventStreamError::TooLarge { .. } => FramingError::TooLarge {
                limit: self.decoder.limit(),
            },
            other => FramingError::Malformed(other.to_string()),
        }
    }
}

impl Framer for EventStreamFramer {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError> {
        let result = self.decoder.feed(chunk, &mut self.decoded);
        // Messages completed before a malformed one are still delivered.
        for Decoded { message, raw } in self.decoded.drain(..) {
            out.push(Frame {
                event: message.kind().map(str::to_owned),
                payload: message.payload,
                raw,
            });
        }
        result.map_err(|e| self.framing_error(e))
    }

    fn finish(&mut self, _out: &mut Vec<Frame>) -> Result<(), FramingError> {
        self.decoder.finish().map_err(|e| self.framing_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]], limit: usize) -> Result<Vec<Decoded>, EventStreamError> {
        let mut d = MessageDecoder::with_max_message_bytes(limit);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        d.finish()?;
        Ok(out)
    }

    // Test vectors of the AWS Common Runtime's event-stream library
    // (aws-c-event-stream, tests/message_deserializer_test.c).

    /// An empty message: no headers, no payload.
    const CRT_EMPTY: [u8; 16] = [
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8,
        0xff,
    ];

    /// `{'foo':'bar'}` without headers.
    const CRT_NO_HEADERS: [u8; 29] = [
        0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27, 0x66,
        0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39, 0x36,
    ];

    /// `{'foo':'bar'}` with `content-type: application/json`.
    fn crt_one_header() -> Vec<u8> {
        let mut v = vec![
            0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C,
        ];
        v.extend_from_slice(b"content-type");
        v.extend_from_slice(&[0x07, 0x00, 0x10]);
        v.extend_from_slice(b"application/json");
        v.extend_from_slice(b"{'foo':'bar'}");
        v.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
        v
    }

    #[test]
    fn the_aws_crt_test_vectors_decode_and_encode_byte_for_byte() {
        let empty = Message::decode(&CRT_EMPTY).unwrap();
        assert_eq!(empty, Message::default());
        assert_eq!(&empty.encode().unwrap()[..], &CRT_EMPTY[..]);

        let no_headers = Message::decode(&CRT_NO_HEADERS).unwrap();
        assert!(no_headers.headers.is_empty());
        assert_eq!(&no_headers.payload[..], b"{'foo':'bar'}");
        assert_eq!(&no_headers.encode().unwrap()[..], &CRT_NO_HEADERS[..]);

        let wire = crt_one_header();
        let one = Message::decode(&wire).unwrap();
        assert_eq!(
            one.headers,
            vec![Header {
                name: "content-type".into(),
                value: HeaderValue::String("application/json".into()),
            }]
        );
        assert_eq!(&one.payload[..], b"{'foo':'bar'}");
        assert_eq!(&one.encode().unwrap()[..], &wire[..]);
    }

    /// Every header type, laid out by hand from the specification (not by the encoder).
    #[test]
    fn every_header_type_is_read_as_the_specification_lays_it_out() {
        let mut headers = Vec::new();
        let mut put = |name: &str, kind: u8, value: &[u8]| {
            headers.push(name.len() as u8);
            headers.extend_from_slice(name.as_bytes());
            headers.push(kind);
            headers.extend_from_slice(value);
        };
        let uuid = [
            0xb7, 0x9b, 0xc9, 0x14, 0xde, 0x21, 0x4e, 0x13, 0xb8, 0xb2, 0xbc, 0x47, 0xe8, 0x5b,
            0x7f, 0x0b,
        ];
        put("true", 0, &[]);
        put("false", 1, &[]);
        put("byte", 2, &[0xce]); // -50
        put("short", 3, &20_000i16.to_be_bytes());
        put("int", 4, &500_000i32.to_be_bytes());
        put("long", 5, &50_000_000_000i64.to_be_bytes());
        put("bytes", 6, b"\x00\x0asome bytes");
        put("str", 7, b"\x00\x08some str");
        put("time", 8, &5_000_000_000i64.to_be_bytes());
        put("uuid", 9, &uuid);
        let payload = b"some payload";
        let total = 16 + headers.len() + payload.len();
        let mut wire = Vec::new();
        wire.extend_from_slice(&(total as u32).to_be_bytes());
        wire.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        wire.extend_from_slice(&crc32fast::hash(&wire).to_be_bytes());
        wire.extend_from_slice(&headers);
        wire.extend_from_slice(payload);
        wire.extend_from_slice(&crc32fast::hash(&wire).to_be_bytes());

        let m = Message::decode(&wire).unwrap();
        let values: Vec<_> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.clone()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("true", HeaderValue::Bool(true)),
                ("false", HeaderValue::Bool(false)),
                ("byte", HeaderValue::Byte(-50)),
                ("short", HeaderValue::Short(20_000)),
                ("int", HeaderValue::Int(500_000)),
                ("long", HeaderValue::Long(50_000_000_000)),
                (
                    "bytes",
                    HeaderValue::Bytes(Bytes::from_static(b"some bytes"))
                ),
                ("str", HeaderValue::String("some str".into())),
                ("time", HeaderValue::Timestamp(5_000_000_000)),
                ("uuid", HeaderValue::Uuid(uuid)),
            ]
        );
        assert_eq!(&m.payload[..], payload);
        assert_eq!(&m.encode().unwrap()[..], &wire[..]);
    }

    #[test]
    fn the_message_type_headers_name_the_stream_member() {
        let event = Message::event("contentBlockDelta", r#"{"contentBlockIndex":0}"#);
        assert_eq!(event.message_type(), Some(MessageType::Event));
        assert_eq!(event.event_type(), Some("contentBlockDelta"));
        assert_eq!(event.content_type(), Some("application/json"));
        assert_eq!(event.kind(), Some("contentBlockDelta"));

        let exception = Message::exception("throttlingException", r#"{"message":"slow down"}"#);
        assert_eq!(exception.message_type(), Some(MessageType::Exception));
        assert_eq!(exception.exception_type(), Some("throttlingException"));
        assert_eq!(exception.kind(), Some("throttlingException"));

        let error = Message::error("InternalFailure", "something broke");
        assert_eq!(error.message_type(), Some(MessageType::Error));
        assert_eq!(error.error_code(), Some("InternalFailure"));
        assert_eq!(error.error_message(), Some("something broke"));
        assert_eq!(error.kind(), Some("InternalFailure"));

        assert_eq!(Message::new("x").message_type(), None);
        assert_eq!(Message::new("x").kind(), None);
    }

    #[test]
    fn the_framer_yields_frames_with_the_member_name_payload_and_whole_message() {
        let a = Message::event("messageStart", r#"{"role":"assistant"}"#)
            .encode()
            .unwrap();
        let b = Message::exception("modelStreamErrorException", r#"{"message":"boom"}"#)
            .encode()
            .unwrap();
        let mut wire = a.to_vec();
        wire.extend_from_slice(&b);
        let mut framer = EventStreamFramer::new();
        let mut frames = Vec::new();
        let (first, second) = wire.split_at(7);
        framer.feed(first, &mut frames).unwrap();
        assert!(frames.is_empty());
        framer.feed(second, &mut frames).unwrap();
        framer.finish(&mut frames).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].event.as_deref(), Some("messageStart"));
        assert_eq!(frames[0].payload_text(), r#"{"role":"assistant"}"#);
        assert_eq!(frames[0].raw, a);
        assert_eq!(
            frames[1].event.as_deref(),
            Some("modelStreamErrorException")
        );
        let back = Message::from_frame(&frames[1]).unwrap();
        assert_eq!(back.message_type(), Some(MessageType::Exception));
        assert_eq!(&back.payload[..], br#"{"message":"boom"}"#);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_prelude() {
        let big = Message::new(vec![b'x'; 100]).encode().unwrap();
        let mut framer = EventStreamFramer::with_max_frame_bytes(64);
        let mut frames = Vec::new();
        // Only the prelude has arrived: the limit applies before the body is buffered.
        assert_eq!(
            framer.feed(&big[..12], &mut frames),
            Err(FramingError::TooLarge { limit: 64 })
        );
        let mut d = MessageDecoder::with_max_message_bytes(64);
        assert_eq!(
            d.feed(&big, &mut Vec::new()),
            Err(EventStreamError::TooLarge {
                total: 116,
                limit: 64
            })
        );
        // The decoder stays failed.
        assert!(d.feed(&CRT_EMPTY, &mut Vec::new()).is_err());
        // The default limit is 16 MiB.
        assert_eq!(MessageDecoder::new().limit(), 16 * 1024 * 1024);
    }

    #[test]
    fn malformed_messages_are_reported_precisely() {
        // A wrong prelude checksum.
        let mut bad = CRT_NO_HEADERS;
        bad[8..12].copy_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(
            Message::decode(&bad),
            Err(EventStreamError::PreludeChecksum {
                computed: 0xfd52_8c5a,
                stated: 0xDEAD_BEEF
            })
        );
        // A wrong message checksum.
        let mut bad = CRT_NO_HEADERS;
        bad[25..].copy_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(
            Message::decode(&bad),
            Err(EventStreamError::MessageChecksum {
                computed: 0xc365_3936,
                stated: 0xDEAD_BEEF
            })
        );
        // A flipped payload bit.
        let mut bad = CRT_NO_HEADERS;
        bad[14] ^= 0x01;
        assert!(matches!(
            Message::decode(&bad),
            Err(EventStreamError::MessageChecksum { .. })
        ));
        // Lengths that cannot be: below the minimum, headers past the end.
        let with_prelude = |total: u32, headers: u32| {
            let mut v = total.to_be_bytes().to_vec();
            v.extend_from_slice(&headers.to_be_bytes());
            v.extend_from_slice(&crc32fast::hash(&v).to_be_bytes());
            v
        };
        assert_eq!(
            Message::decode(&with_prelude(15, 0)),
            Err(EventStreamError::TooShort { total: 15 })
        );
        assert_eq!(
            Message::decode(&with_prelude(20, 5)),
            Err(EventStreamError::HeadersLength {
                headers: 5,
                total: 20
            })
        );
        // Headers that run past their section, or have an unknown type.
        let message_with_headers = |headers: &[u8]| {
            let mut v = with_prelude(16 + headers.len() as u32, headers.len() as u32);
            v.extend_from_slice(headers);
            v.extend_from_slice(&crc32fast::hash(&v).to_be_bytes());
            v
        };
        assert!(matches!(
            Message::decode(&message_with_headers(b"\x04name\x07\x00\x09short")),
            Err(EventStreamError::MalformedHeader { index: 0, .. })
        ));
        assert_eq!(
            Message::decode(&message_with_headers(b"\x01a\x00\x01b\x60")),
            Err(EventStreamError::MalformedHeader {
                index: 1,
                reason: "unknown value type 96".into()
            })
        );
        assert!(matches!(
            Message::decode(&message_with_headers(b"\x01\xff\x00")),
            Err(EventStreamError::MalformedHeader { index: 0, .. })
        ));
        // A stream that stops inside a message; bytes after one message.
        assert_eq!(
            decode_all(&[&CRT_NO_HEADERS[..20]], MAX_MESSAGE_BYTES),
            Err(EventStreamError::Truncated { have: 20 })
        );
        let mut two = CRT_EMPTY.to_vec();
        two.push(0);
        assert_eq!(
            Message::decode(&two),
            Err(EventStreamError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn oversized_headers_cannot_be_encoded() {
        let long_name = "n".repeat(256);
        assert_eq!(
            Message::new("").with_header(long_name, true).encode(),
            Err(EventStreamError::HeaderNameTooLong { len: 256 })
        );
        let long_value = "v".repeat(65_536);
        assert!(matches!(
            Message::new("").with_header("h", long_value).encode(),
            Err(EventStreamError::HeaderValueTooLong { len: 65_536, .. })
        ));
    }

    fn arb_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            any::<bool>().prop_map(HeaderValue::Bool),
            any::<i8>().prop_map(HeaderValue::Byte),
            any::<i16>().prop_map(HeaderValue::Short),
            any::<i32>().prop_map(HeaderValue::Int),
            any::<i64>().prop_map(HeaderValue::Long),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| HeaderValue::Bytes(Bytes::from(b))),
            "\\PC{0,40}".prop_map(HeaderValue::String),
            any::<i64>().prop_map(HeaderValue::Timestamp),
            any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let header = ("[:a-z-]{0,20}|\\PC{0,30}", arb_value())
            .prop_map(|(name, value)| Header { name, value });
        (
            proptest::collection::vec(header, 0..8),
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(|(headers, payload)| Message {
                headers,
                payload: Bytes::from(payload),
            })
    }

    fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts {
            chunks.push(&bytes[start..c]);
            start = c;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    proptest! {
        /// Whatever the headers and payloads, and however the bytes are cut into chunks,
        /// decoding gives back the messages encoded, each with its exact bytes.
        #[test]
        fn encode_then_decode_round_trips_under_any_chunking(
            messages in proptest::collection::vec(arb_message(), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let encoded: Vec<Bytes> = messages.iter().map(|m| m.encode().unwrap()).collect();
            let wire: Vec<u8> = encoded.concat();
            let decoded = decode_all(&cut(&wire, &cuts), MAX_MESSAGE_BYTES).unwrap();
            let got: Vec<Message> = decoded.iter().map(|d| d.message.clone()).collect();
            prop_assert_eq!(&got, &messages);
            let raws: Vec<Bytes> = decoded.into_iter().map(|d| d.raw).collect();
            prop_assert_eq!(raws, encoded);

            let mut framer = EventStreamFramer::new();
            let mut frames = Vec::new();
            for c in cut(&wire, &cuts) {
                framer.feed(c, &mut frames).unwrap();
            }
            framer.finish(&mut frames).unwrap();
            prop_assert_eq!(frames.len(), messages.len());
            for (f, m) in frames.iter().zip(&messages) {
                prop_assert_eq!(&f.payload, &m.payload);
                prop_assert_eq!(f.event.as_deref(), m.kind());
                prop_assert_eq!(&Message::from_frame(f).unwrap(), m);
            }
        }

        /// Any single flipped bit in a stream is an error, never a different message, and the
        /// messages before the damaged one still come out.
        #[test]
        fn a_corrupted_stream_is_an_error(
            messages in proptest::collection::vec(arb_message(), 1..4),
            at in any::<usize>(),
            bit in 0u8..8,
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let encoded: Vec<Bytes> = messages.iter().map(|m| m.encode().unwrap()).collect();
            let mut wire: Vec<u8> = encoded.concat();
            let at = at % wire.len();
            wire[at] ^= 1 << bit;
            let damaged = {
                let mut end = 0;
                encoded.iter().position(|e| { end += e.len(); at < end }).unwrap_or(0)
            };
            let mut d = MessageDecoder::new();
            let mut out = Vec::new();
            let mut result = Ok(());
            for c in cut(&wire, &cuts) {
                result = d.feed(c, &mut out);
                if result.is_err() {
                    break;
                }
            }
            let result = result.and_then(|()| d.finish());
            prop_assert!(result.is_err());
            prop_assert_eq!(out.len(), damaged);
            let got: Vec<Message> = out.into_iter().map(|d| d.message).collect();
            prop_assert_eq!(&got[..], &messages[..got.len()]);
        }

        /// A stream cut short is an error at its end.
        #[test]
        fn a_truncated_stream_is_an_error(message in arb_message(), keep in any::<usize>()) {
            let wire = message.encode().unwrap();
            let keep = 1 + keep % (wire.len() - 1);
            prop_assert!(decode_all(&[&wire[..keep]], MAX_MESSAGE_BYTES).is_err());
        }

        /// Arbitrary bytes never make the decoder panic, with any limit and any chunking.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            limit in 0usize..1024,
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let _ = decode_all(&cut(&bytes, &cuts), limit);
            let _ = Message::decode(&bytes);
        }

        /// Random headers and payloads behind a valid prelude and checksum (so decoding gets
        /// past the checksums into the headers) are read or refused, never a panic.
        #[test]
        fn random_headers_behind_valid_checksums_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            headers_len in any::<usize>(),
        ) {
            let headers_len = headers_len % (body.len() + 1);
            let mut wire = ((body.len() + 16) as u32).to_be_bytes().to_vec();
            wire.extend_from_slice(&(headers_len as u32).to_be_bytes());
            wire.extend_from_slice(&crc32fast::hash(&wire).to_be_bytes());
            wire.extend_from_slice(&body);
            wire.extend_from_slice(&crc32fast::hash(&wire).to_be_bytes());
            match Message::decode(&wire) {
                Ok(m) => prop_assert_eq!(m.payload.len(), body.len() - headers_len),
                Err(e) => {
                    let is_header_error = matches!(e, EventStreamError::MalformedHeader { .. });
                    prop_assert!(is_header_error, "{}", e);
                }
            }
        }
    }
}
