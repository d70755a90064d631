//! Framing: cutting an upstream's streamed body into frames, separately from decoding them.
//!
//! A streamed answer is read in three steps: a [`Framer`] cuts the body's bytes into
//! [`Frame`]s (each keeping its raw bytes, so a frame that needs no rewriting can be forwarded
//! exactly as received), a [`StreamDecoder`](crate::StreamDecoder) turns each frame's payload
//! into canonical events, and an encoder writes events in the client's dialect. The framer is
//! what differs between transports: server-sent events ([`SseFramer`]) for OpenAI and
//! Anthropic; AWS's binary event stream
//! ([`EventStreamFramer`](crate::aws_eventstream::EventStreamFramer), Bedrock) yields the same
//! [`Frame`]s, so the decoders never depend on the transport.

use bytes::Bytes;

use crate::sse::SseParser;

/// One frame of an upstream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's event type, when the transport names one: the SSE `event:` field; for an
    /// AWS event-stream message, the stream member it carries (its `:event-type`, or the
    /// `:exception-type` of an exception, or the `:error-code` of an error).
    pub event: Option<String>,
    /// The payload the decoder reads: the SSE `data:` lines joined with `\n`.
    pub payload: Bytes,
    /// The frame's bytes as received (for SSE, from its first line to its closing blank line,
    /// including comments and lines of frames that were not dispatched before it; for an AWS
    /// event stream, the whole message).
    pub raw: Bytes,
}

impl Frame {
    /// The payload as text (invalid UTF-8 replaced), for diagnostics and tests.
    pub fn payload_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }
}

/// Why a body could not be cut into frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A frame grew past the framer's limit.
    #[error("the upstream sent a stream frame larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The bytes are not a frame of this transport (a binary framer's checksum or length).
    #[error("the upstream sent a malformed stream frame: {0}")]
    Malformed(String),
}

/// Cuts a streamed body into frames, chunk by chunk. However the bytes are split into chunks,
/// the same frames come out.
pub trait Framer: Send {
    /// Feeds a chunk, appending every frame it completes to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError>;

    /// Ends the input, appending a final frame the transport allows to end unterminated.
    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), FramingError>;
}

/// Server-sent events framing (the WHATWG `text/event-stream` rules, see [`SseParser`]).
#[derive(Debug, Default)]
pub struct SseFramer {
    parser: SseParser,
    limit: Option<usize>,
}

impl SseFramer {
    /// A framer without a frame-size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer that refuses frames larger than `limit` bytes, so a misbehaving upstream cannot
    /// make the gateway buffer without bound.
    pub fn with_max_frame_bytes(limit: usize) -> Self {
        Self {
            parser: SseParser::with_max_frame_bytes(limit),
            limit: Some(limit),
        }
    }
}

impl Framer for SseFramer {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError> {
        self.parser
            .feed(chunk, out)
            .map_err(|_| FramingError::TooLarge {
                limit: self.limit.unwrap_or(usize::MAX),
            })
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), FramingError> {
        self.parser.finish(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_framer_keeps_payload_and_raw_bytes_and_its_limit() {
        let mut f = SseFramer::with_max_frame_bytes(64);
        let mut out = Vec::new();
        f.feed(b"event: a\ndata: {\"x\":", &mut out).unwrap();
        f.feed(b"1}\n\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.as_deref(), Some("a"));
        assert_eq!(&out[0].payload[..], b"{\"x\":1}");
        assert_eq!(&out[0].raw[..], b"event: a\ndata: {\"x\":1}\n\n");
        assert_eq!(
            f.feed(&[b'a'; 100], &mut out),
            Err(FramingError::TooLarge { limit: 64 })
        );
    }

    #[test]
    fn sse_framer_dispatches_an_unterminated_last_frame_at_the_end() {
        let mut f = SseFramer::new();
        let mut out = Vec::new();
        f.feed(b"data: last", &mut out).unwrap();
        assert!(out.is_empty());
        f.finish(&mut out).unwrap();
        assert_eq!(&out[0].payload[..], b"last");
    }
}
