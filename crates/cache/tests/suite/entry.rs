//! The stored entry format: lossless round trips, and errors (never panics) on anything else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use portcullis_cache::{CachedResponse, EntryError};
use portcullis_core::{Dialect, Usage};
use proptest::prelude::*;

fn entry() -> impl Strategy<Value = CachedResponse> {
    (
        prop_oneof![Just(Dialect::OpenAi), Just(Dialect::Anthropic)],
        prop::collection::vec(any::<u8>(), 0..512),
        ".{0,24}",
        ".{0,40}",
        any::<[u64; 5]>(),
        any::<i64>(),
    )
        .prop_map(
            |(dialect, body, provider, model, u, stored_at_unix_ms)| CachedResponse {
                dialect,
                body: Bytes::from(body),
                provider,
                model,
                usage: Usage {
                    input_tokens: u[0],
                    output_tokens: u[1],
                    cached_input_tokens: u[2],
                    cache_write_input_tokens: u[3],
                    reasoning_tokens: u[4],
                },
                stored_at_unix_ms,
            },
        )
}

fn sample() -> CachedResponse {
    CachedResponse {
        dialect: Dialect::Anthropic,
        body: Bytes::from_static(br#"{"id":"msg_1","type":"message"}"#),
        provider: "anthropic".into(),
        model: "claude-sonnet-4".into(),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 20,
            ..Usage::default()
        },
        stored_at_unix_ms: 1_700_000_000_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn entries_round_trip(e in entry()) {
        let encoded = e.encode();
        prop_assert_eq!(&CachedResponse::decode(&encoded).unwrap(), &e);
        prop_assert_eq!(&CachedResponse::decode_shared(&encoded).unwrap(), &e);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // Whatever the outcome, decoding returns; anything that does decode re-encodes to
        // exactly the input, so no two inputs mean the same entry.
        if let Ok(e) = CachedResponse::decode(&bytes) {
            let again = e.encode();
            prop_assert_eq!(again.as_ref(), bytes.as_slice());
        }
    }

    #[test]
    fn damaged_entries_are_errors(e in entry(), cut in any::<prop::sample::Index>(), extra in 1..8usize) {
        let encoded = e.encode();
        let cut = cut.index(encoded.len());
        prop_assert!(CachedResponse::decode(&encoded[..cut]).is_err(), "truncated at {}", cut);
        let mut longer = encoded.to_vec();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert_eq!(CachedResponse::decode(&longer), Err(EntryError::TrailingBytes(extra)));
    }

    #[test]
    fn valid_headers_with_random_tails_never_panic(tail in prop::collection::vec(any::<u8>(), 0..128)) {
        let encoded = sample().encode();
        // Keep magic, version and dialect, then garbage where lengths and text live.
        let mut bytes = encoded[..5].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = CachedResponse::decode(&bytes);
    }
}

#[test]
fn header_fields_are_checked() {
    let encoded = sample().encode().to_vec();
    assert_eq!(CachedResponse::decode(&[]), Err(EntryError::Truncated));

    let mut bad_magic = encoded.clone();
    bad_magic[0] = b'X';
    assert_eq!(
        CachedResponse::decode(&bad_magic),
        Err(EntryError::BadMagic)
    );

    let mut future = encoded.clone();
    future[3] = 99;
    assert_eq!(
        CachedResponse::decode(&future),
        Err(EntryError::UnsupportedVersion(99))
    );

    let mut dialect = encoded.clone();
    dialect[4] = 7;
    assert_eq!(
        CachedResponse::decode(&dialect),
        Err(EntryError::UnknownDialect(7))
    );

    // The provider name starts after the fixed header and its 4-byte length.
    let provider_at = 3 + 1 + 1 + 8 + 40 + 4;
    let mut utf8 = encoded;
    utf8[provider_at] = 0xFF;
    assert_eq!(
        CachedResponse::decode(&utf8),
        Err(EntryError::InvalidUtf8("provider"))
    );
}

#[test]
fn shared_decoding_does_not_copy_the_body() {
    let encoded = sample().encode();
    let decoded = CachedResponse::decode_shared(&encoded).unwrap();
    let inside = encoded.as_ptr_range();
    assert!(inside.contains(&decoded.body.as_ptr()));
}
