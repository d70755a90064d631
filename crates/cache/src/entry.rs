//! The stored form of a cached answer: a small versioned binary header and the response body.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic "PCR"  version u8  dialect u8  stored_at_unix_ms i64
//! usage: input, output, cached_input, cache_write_input, reasoning  (5 × u64)
//! provider_len u32  provider (UTF-8)
//! model_len u32     model (UTF-8)
//! body_len u64      body (a complete response JSON in `dialect`)
//! ```
//!
//! Decoding checks every length against the input and rejects trailing bytes, so a corrupt
//! or foreign value is an [`EntryError`], never a panic or a wrong answer.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use portcullis_core::{Dialect, Usage};

const MAGIC: &[u8; 3] = b"PCR";
/// The entry format version this build writes and reads.
pub const ENTRY_FORMAT_VERSION: u8 = 1;

/// Bytes before the variable-length fields.
const FIXED_HEADER: usize = MAGIC.len() + 1 + 1 + 8 + 5 * 8;

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// The dialect `body` is written in.
    pub dialect: Dialect,
    /// A complete (non-streamed) response JSON in `dialect`.
    pub body: Bytes,
    /// The provider that produced the answer.
    pub provider: String,
    /// The model that produced the answer, as the provider reported it.
    pub model: String,
    /// The usage of the original call (what a hit saved).
    pub usage: Usage,
    /// When the answer was stored, in Unix milliseconds.
    pub stored_at_unix_ms: i64,
}

/// Why stored bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The value ends before a field it announces.
    #[error("cache entry is truncated")]
    Truncated,
    /// The value does not start with the entry magic.
    #[error("not a cache entry (bad magic)")]
    BadMagic,
    /// The entry was written by an incompatible format version.
    #[error("unsupported cache entry version {0}")]
    UnsupportedVersion(u8),
    /// The dialect byte names no known dialect.
    #[error("unknown dialect tag {0} in cache entry")]
    UnknownDialect(u8),
    /// A text field is not UTF-8.
    #[error("cache entry field `{0}` is not UTF-8")]
    InvalidUtf8(&'static str),
    /// Bytes follow the body.
    #[error("{0} unexpected bytes after the cache entry body")]
    TrailingBytes(usize),
}

impl CachedResponse {
    /// The entry's stored form.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            FIXED_HEADER + 4 + self.provider.len() + 4 + self.model.len() + 8 + self.body.len(),
        );
        out.put_slice(MAGIC);
        out.put_u8(ENTRY_FORMAT_VERSION);
        out.put_u8(dialect_tag(self.dialect));
        out.put_i64_le(self.stored_at_unix_ms);
        let u = &self.usage;
        for count in [
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_input_tokens,
            u.reasoning_tokens,
        ] {
            out.put_u64_le(count);
        }
        put_text(&mut out, &self.provider);
        put_text(&mut out, &self.model);
        out.put_u64_le(self.body.len() as u64);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Decodes a stored entry, copying the body out of `input`.
    pub fn decode(input: &[u8]) -> Result<Self, EntryError> {
        let (mut entry, body) = decode_parts(input)?;
        entry.body = Bytes::copy_from_slice(&input[body]);
        Ok(entry)
    }

    /// Decodes a stored entry; the body shares `input`'s buffer instead of being copied.
    pub fn decode_shared(input: &Bytes) -> Result<Self, EntryError> {
        let (mut entry, body) = decode_parts(input)?;
        entry.body = input.slice(body);
        Ok(entry)
    }
}

fn dialect_tag(dialect: Dialect) -> u8 {
    match dialect {
        Dialect::OpenAi => 1,
        Dialect::Anthropic => 2,
    }
}

fn put_text(out: &mut BytesMut, text: &str) {
    // Provider and model names are short; a name over 4 GiB cannot occur in memory we hold.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.put_u32_le(len);
    out.put_slice(&text.as_bytes()[..len as usize]);
}

/// Decodes everything but the body, and says where the body lies in `input`.
fn decode_parts(input: &[u8]) -> Result<(CachedResponse, Range<usize>), EntryError> {
    let mut r = Reader { input, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(EntryError::BadMagic);
    }
    let version = r.u8()?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(EntryError::UnsupportedVersion(version));
    }
    let dialect = match r.u8()? {
        1 => Dialect::OpenAi,
        2 => Dialect::Anthropic,
        other => return Err(EntryError::UnknownDialect(other)),
    };
    let stored_at_unix_ms = i64::from_le_bytes(r.array()?);
    let usage = Usage {
        input_tokens: r.u64()?,
        output_tokens: r.u64()?,
        cached_input_tokens: r.u64()?,
        cache_write_input_tokens: r.u64()?,
        reasoning_tokens: r.u64()?,
    };
    let provider = r.text("provider")?;
    let model = r.text("model")?;
    let body_len = usize::try_from(r.u64()?).map_err(|_| EntryError::Truncated)?;
    let start = r.pos;
    r.take(body_len)?;
    let rest = input.len() - r.pos;
    if rest != 0 {
        return Err(EntryError::TrailingBytes(rest));
    }
    let entry = CachedResponse {
        dialect,
        body: Bytes::new(),
        provider,
        model,
        usage,
        stored_at_unix_ms,
    };
    Ok((entry, start..r.pos))
}

/// A bounds-checked cursor over an entry.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], EntryError> {
        let end = self.pos.checked_add(len).ok_or(EntryError::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(EntryError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn text(&mut self, field: &'static str) -> Result<String, EntryError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| EntryError::InvalidUtf8(field))
    }
}
