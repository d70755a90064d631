//! Text PostgreSQL cannot store, made storable and read back unchanged.
//!
//! PostgreSQL's `text` refuses the NUL character, which a caller can put in any JSON string
//! (`"\u0000"`) that ends up in the request log. [`escape`] rewrites such a value reversibly
//! and [`unescape`] restores it; every other value passes through untouched and unallocated.
//!
//! An escaped value starts with [`MARK`] (U+FDD0, a Unicode noncharacter reserved for a
//! program's internal use) and then holds the original with `%` written `%25` and NUL written
//! `%00`. A value is escaped when it contains NUL *or already starts with the mark*, so reading
//! back is exact for every string: a stored value starting with the mark is always an escaped
//! one.

use std::borrow::Cow;

/// The first character of an escaped value.
pub const MARK: char = '\u{FDD0}';

/// `s` in a form PostgreSQL stores: unchanged (borrowed) unless it contains NUL or starts with
/// [`MARK`].
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().contains(&0) && !s.starts_with(MARK) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + MARK.len_utf8() + 8);
    out.push(MARK);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("%00"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The value [`escape`] was given, from what it returned. Values that do not start with
/// [`MARK`] are returned as they are.
pub fn unescape(s: String) -> String {
    let Some(rest) = s.strip_prefix(MARK) else {
        return s;
    };
    let mut out = String::with_capacity(rest.len());
    let mut pieces = rest.split('%');
    if let Some(first) = pieces.next() {
        out.push_str(first);
    }
    for piece in pieces {
        // Every `%` an escape wrote is followed by `00` or `25`; anything else (a value
        // written by someone else) is kept as it is.
        if let Some(tail) = piece.strip_prefix("00") {
            out.push('\0');
            out.push_str(tail);
        } else if let Some(tail) = piece.strip_prefix("25") {
            out.push('%');
            out.push_str(tail);
        } else {
            out.push('%');
            out.push_str(piece);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ordinary_values_pass_through_unallocated() {
        for s in [
            "",
            "gpt-4o",
            "100% sure",
            "%00",
            "{\"a\":\"\\u0000\"}",
            "é\u{1}\u{7f}",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s:?}");
            assert_eq!(unescape(s.to_owned()), s);
        }
    }

    #[test]
    fn nul_and_the_mark_are_escaped() {
        assert_eq!(escape("a\0b%"), format!("{MARK}a%00b%25"));
        assert_eq!(escape("\u{FDD0}x"), format!("{MARK}{MARK}x"));
        assert_eq!(unescape(format!("{MARK}a%00b%25")), "a\0b%");
        assert_eq!(unescape(format!("{MARK}50%")), "50%", "a stray % is kept");
    }

    /// Strings rich in the characters that matter.
    fn tricky() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('%'),
                Just('0'),
                Just('2'),
                Just('5'),
                Just(MARK),
                any::<char>(),
            ],
            0..24,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn round_trip_is_exact(s in tricky()) {
            let stored = escape(&s);
            prop_assert!(!stored.contains('\0'));
            prop_assert_eq!(unescape(stored.into_owned()), s);
        }

        #[test]
        fn round_trip_of_any_string(s in any::<String>()) {
            prop_assert_eq!(unescape(escape(&s).into_owned()), s);
        }

        #[test]
        fn untouched_exactly_when_ordinary(s in tricky()) {
            let ordinary = !s.contains('\0') && !s.starts_with(MARK);
            prop_assert_eq!(matches!(escape(&s), Cow::Borrowed(_)), ordinary);
        }

        #[test]
        fn escaping_is_injective(a in tricky(), b in tricky()) {
            if a != b {
                prop_assert_ne!(escape(&a), escape(&b));
            }
        }
    }
}
