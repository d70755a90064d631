//! Server-sent events: an incremental parser for upstream streams and a writer for client streams.
//!
//! The parser follows the WHATWG `text/event-stream` rules (LF, CRLF and CR line endings, a
//! line break split across chunks, `:` comments, one optional space after the colon, multi-line
//! `data`, dispatch on a blank line, frames without data not dispatched) and accepts input in
//! arbitrary chunks. Each dispatched [`SseFrame`] also carries its raw bytes, so a frame that
//! needs no translation can be forwarded to the client exactly as the upstream sent it. The
//! gateway reads upstream streams through [`SseFramer`](crate::frame::SseFramer), the
//! [`Framer`](crate::frame::Framer) built on this parser.

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::frame::Frame;

/// One dispatched server-sent event: a [`Frame`] whose `event` is the `event:` field and
/// whose payload is the `data:` lines joined with `\n`.
pub type SseFrame = Frame;

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    raw: BytesMut,
    event: Option<String>,
    data: String,
    has_data: bool,
    pending_cr: bool,
    max_frame_bytes: Option<usize>,
}

/// The upstream sent a frame larger than the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge;

impl SseParser {
    /// A parser without a frame-size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that refuses frames larger than `limit` bytes, so a misbehaving upstream cannot
    /// make the gateway buffer without bound.
    pub fn with_max_frame_bytes(limit: usize) -> Self {
        Self {
            max_frame_bytes: Some(limit),
            ..Self::default()
        }
    }

    /// Feeds a chunk, appending every frame it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseFrame>) -> Result<(), FrameTooLarge> {
        while !chunk.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                if chunk[0] == b'\n' {
                    self.raw.put_u8(b'\n');
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', chunk) {
                Some(pos) => {
                    self.line.extend_from_slice(&chunk[..pos]);
                    // A CRLF inside this chunk is one line break; a CR at the chunk's end may
                    // be followed by the LF in the next chunk.
                    let mut end = pos + 1;
                    if chunk[pos] == b'\r' {
                        if chunk.get(end) == Some(&b'\n') {
                            end += 1;
                        } else if end == chunk.len() {
                            self.pending_cr = true;
                        }
                    }
                    self.raw.extend_from_slice(&chunk[..end]);
                    chunk = &chunk[end..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out);
                    self.line = line;
                    self.line.clear();
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    self.raw.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
            if let Some(limit) = self.max_frame_bytes
                && self.raw.len() > limit
            {
                return Err(FrameTooLarge);
            }
        }
        Ok(())
    }

    /// Ends the input. A frame whose closing blank line never came is dispatched anyway
    /// (some upstreams omit it before closing the connection).
    pub fn finish(&mut self, out: &mut Vec<SseFrame>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.dispatch(out);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
        if !self.has_data {
            self.event = None;
            return;
        }
        out.push(Frame {
            event: self.event.take(),
            payload: Bytes::from(std::mem::take(&mut self.data)),
            raw: self.raw.split().freeze(),
        });
        self.has_data = false;
    }
}

/// Appends `data: <json>\n\n` to `out`.
pub fn write_data(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n` to `out`.
pub fn write_event(out: &mut BytesMut, event: &str, data: &[u8]) {
    out.reserve(event.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\n");
    write_data(out, data);
}

/// Appends `data: <serialized value>\n\n`, serializing straight into the buffer.
pub fn write_json_data<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    out.put_slice(b"data: ");
    put_json(out, value);
    out.put_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <serialized value>\n\n`.
pub fn write_json_event<T: serde::Serialize + ?Sized>(out: &mut BytesMut, event: &str, value: &T) {
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\ndata: ");
    put_json(out, value);
    out.put_slice(b"\n\n");
}

/// Serializes `value` into `out`. Serializing the gateway's own types cannot fail; if a value
/// ever does, `null` is written so the frame stays well-formed.
pub(crate) fn put_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    let mut writer = out.writer();
    if serde_json::to_writer(&mut writer, value).is_err() {
        writer.get_mut().put_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn parses_events_data_comments_and_line_endings() {
        let input = b": keep-alive\nevent: message_start\ndata: {\"a\":1}\n\ndata: x\r\ndata:y\r\n\r\ndata: z\r\rdata: [DONE]\n\n";
        let frames = parse_all(&[input]);
        let summary: Vec<_> = frames
            .iter()
            .map(|f| (f.event.clone(), f.payload_text().into_owned()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("message_start".into()), "{\"a\":1}".into()),
                (None, "x\ny".into()),
                (None, "z".into()),
                (None, "[DONE]".into()),
            ]
        );
        assert_eq!(
            &frames[0].raw[..],
            b": keep-alive\nevent: message_start\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn frames_without_data_are_not_dispatched_and_reset_the_event() {
        let frames = parse_all(&[b"event: ping\n\ndata: 1\n\n"]);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event, None);
    }

    #[test]
    fn an_unterminated_final_frame_is_still_dispatched() {
        let frames = parse_all(&[b"data: last"]);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload_text(), "last");
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut p = SseParser::with_max_frame_bytes(16);
        let mut out = Vec::new();
        assert_eq!(p.feed(&[b'a'; 64], &mut out), Err(FrameTooLarge));
    }

    #[test]
    fn writers_produce_wellformed_frames() {
        let mut out = BytesMut::new();
        write_json_event(&mut out, "ping", &serde_json::json!({"type": "ping"}));
        write_data(&mut out, b"[DONE]");
        assert_eq!(
            &out[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata: [DONE]\n\n"
        );
    }

    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let frame = (
            proptest::option::of("[a-z_]{1,12}"),
            proptest::collection::vec("[ -~&&[^\r\n]]{0,40}", 1..4),
            line_end,
        )
            .prop_map(|(event, data, nl)| {
                let mut s = String::new();
                if let Some(e) = event {
                    s.push_str(&format!("event: {e}{nl}"));
                }
                for d in data {
                    s.push_str(&format!("data: {d}{nl}"));
                }
                s.push_str(nl);
                s
            });
        proptest::collection::vec(frame, 0..8).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        /// However the bytes are split into chunks, the same frames come out.
        #[test]
        fn chunking_never_changes_the_frames(stream in arb_stream(), cuts in proptest::collection::vec(0usize..400, 0..10)) {
            let whole = parse_all(&[&stream]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for c in cuts {
                chunks.push(&stream[start..c]);
                start = c;
            }
            chunks.push(&stream[start..]);
            let pieces = parse_all(&chunks);
            // Events and data never depend on chunking. A CRLF split across two chunks may
            // leave its LF at the head of the next frame's raw bytes (a harmless blank line),
            // so raw bytes are compared as a whole.
            let summary = |f: &Vec<SseFrame>| f.iter().map(|f| (f.event.clone(), f.payload_text().into_owned())).collect::<Vec<_>>();
            prop_assert_eq!(summary(&whole), summary(&pieces));
            let raw: Vec<u8> = pieces.iter().flat_map(|f| f.raw.to_vec()).collect();
            prop_assert!(stream.starts_with(&raw));
        }

        /// Arbitrary bytes never make the parser panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_all(&[&bytes]);
        }
    }
}
