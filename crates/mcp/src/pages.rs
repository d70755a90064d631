//! Pages of the lists the gateway answers (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) and their cursors.
//!
//! A cursor is stateless, so that any replica continues a listing another began: it holds the
//! offset of the next page and a digest of the list it was cut from — the list's kind and the
//! names of the entries this caller sees, in order. A cursor whose list has changed since
//! (a server's `list_changed`, a reload, other tools allowed to the key) no longer matches the
//! digest and is refused as invalid (JSON-RPC `-32602`), as is anything the gateway did not
//! write; the client lists again from the start. Cursors are opaque to clients and not signed:
//! one only ever points into a list its caller may read whole.

use sha2::{Digest, Sha256};

/// Entries per page unless configured (`mcp.page_size`).
pub const DEFAULT_PAGE_SIZE: usize = crate::config::DEFAULT_PAGE_SIZE;

/// The version prefix of the cursors this gateway writes.
const VERSION: &str = "p1";

/// The digest of a list: its kind and the keys (names or URIs) of its entries, in order.
#[derive(Debug, Clone)]
pub struct ListDigest(Sha256);

impl ListDigest {
    /// A digest of a list of `kind` (its method).
    pub fn new(kind: &str) -> Self {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        Self(h)
    }

    /// Adds the next entry's key.
    pub fn push(&mut self, key: &str) {
        self.0.update(key.as_bytes());
        self.0.update([0]);
    }

    /// The first 16 hex digits.
    pub fn finish(self) -> String {
        self.0.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The cursor of the page that starts at `offset` of the list with `digest`.
pub fn cursor(offset: usize, digest: &str) -> String {
    format!("{VERSION}.{offset:x}.{digest}")
}

/// The offset a cursor points at in the list with `digest`; `None` when it is not a cursor of
/// that list.
pub fn offset(cursor: &str, digest: &str) -> Option<usize> {
    let mut parts = cursor.split('.');
    let (Some(VERSION), Some(offset), Some(of), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if of != digest || offset.is_empty() || offset.len() > 8 {
        return None;
    }
    usize::from_str_radix(offset, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(names: &[&str]) -> String {
        let mut d = ListDigest::new("tools/list");
        for n in names {
            d.push(n);
        }
        d.finish()
    }

    #[test]
    fn a_cursor_points_into_the_list_it_was_cut_from_only() {
        let d = digest(&["a", "b", "c"]);
        let c = cursor(2, &d);
        assert_eq!(offset(&c, &d), Some(2));
        // The list changed: a name added, removed or reordered.
        for other in [&["a", "b", "c", "d"][..], &["a", "c"], &["b", "a", "c"]] {
            assert_eq!(offset(&c, &digest(other)), None, "{other:?}");
        }
        // The same names in another kind of list.
        let mut prompts = ListDigest::new("prompts/list");
        for n in ["a", "b", "c"] {
            prompts.push(n);
        }
        assert_eq!(offset(&c, &prompts.finish()), None);
        // Names whose concatenation is the same.
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
    }

    #[test]
    fn what_the_gateway_did_not_write_is_no_cursor() {
        let d = digest(&["a"]);
        for junk in [
            "",
            "p1",
            "p1..",
            "p1.2",
            "p2.2.x",
            &format!("p1.zz.{d}"),
            &format!("p1.2.{d}.3"),
            &format!("p1.123456789.{d}"),
            &format!("p1.-2.{d}"),
        ] {
            assert_eq!(offset(junk, &d), None, "{junk}");
        }
    }
}
