//! Names on the aggregated endpoint: tools and prompts are `<server>__<name>`, resources
//! `portcullis://<server>/<uri>`.
//!
//! Clients reject tool names longer than 64 characters, so a `<server>__<name>` that would be
//! longer is shortened, deterministically: the server, `__`, as much of the start of the name
//! as fits, `_` and the first 8 hex digits of the SHA-256 of the whole name, 64 characters in
//! all. Two names of one server that shorten alike (or a shortened name equal to another
//! tool's own) take 16 hex digits instead, and more if still needed, so public names are
//! unique per server; the server prefix keeps them unique across servers (server names never
//! contain `__`). The way back from a public name is the table [`ServerNames`] built from the
//! server's list, never a guess.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The longest public tool or prompt name.
pub const MAX_NAME: usize = 64;
/// Between the server and the name.
pub const SEPARATOR: &str = "__";
/// The scheme of resource URIs on the aggregated endpoint.
pub const RESOURCE_PREFIX: &str = "portcullis://";

/// The server and the name a public name was built from, when it is not shortened: everything
/// after the first `__`.
pub fn split(public: &str) -> Option<(&str, &str)> {
    public.split_once(SEPARATOR)
}

/// The public name of `server`'s `name`, with `digits` hex digits of hash when shortened.
fn public_with(server: &str, name: &str, digits: usize) -> String {
    let full_len = server.len() + SEPARATOR.len() + name.len();
    if full_len <= MAX_NAME {
        return format!("{server}{SEPARATOR}{name}");
    }
    let hash = hex(&Sha256::digest(name.as_bytes()));
    let digits = digits.min(most_digits(server));
    let room = MAX_NAME.saturating_sub(server.len() + SEPARATOR.len() + 1 + digits);
    let mut head_end = room.min(name.len());
    while !name.is_char_boundary(head_end) {
        head_end -= 1;
    }
    format!(
        "{server}{SEPARATOR}{}_{}",
        &name[..head_end],
        &hash[..digits]
    )
}

/// The most hex digits a shortened name of `server` can hold (a whole SHA-256 at most).
fn most_digits(server: &str) -> usize {
    MAX_NAME
        .saturating_sub(server.len() + SEPARATOR.len() + 1)
        .min(64)
}

/// The public name of `server`'s `name` when nothing else of the server shortens alike (see
/// the module documentation).
pub fn public(server: &str, name: &str) -> String {
    public_with(server, name, 8)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The public names of one server's tools (or prompts), both ways.
#[derive(Debug, Clone, Default)]
pub struct ServerNames {
    to_public: HashMap<String, String>,
    to_own: HashMap<String, String>,
}

impl ServerNames {
    /// The names of `server`'s `names` (its own, as listed), unique per server.
    pub fn new<'a>(server: &str, names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut own: Vec<&str> = names.into_iter().collect();
        own.sort_unstable();
        own.dedup();
        let mut digits: HashMap<&str, usize> = own.iter().map(|n| (*n, 8)).collect();
        loop {
            let mut by_public: HashMap<String, Vec<&str>> = HashMap::with_capacity(own.len());
            for name in &own {
                by_public
                    .entry(public_with(server, name, digits[name]))
                    .or_default()
                    .push(name);
            }
            let mut widened = false;
            for clash in by_public.values().filter(|names| names.len() > 1) {
                for name in clash {
                    let unshortened = server.len() + SEPARATOR.len() + name.len() <= MAX_NAME;
                    let d = digits.get_mut(name);
                    if let Some(d) = d
                        && !unshortened
                        && *d < most_digits(server)
                    {
                        *d = (*d * 2).min(most_digits(server));
                        widened = true;
                    }
                }
            }
            if !widened {
                let mut to_public = HashMap::with_capacity(own.len());
                let mut to_own = HashMap::with_capacity(own.len());
                for (public, names) in by_public {
                    // Only a true SHA-256 collision leaves a clash here: its names are left out
                    // rather than routed to the wrong tool.
                    if let [name] = names[..] {
                        to_public.insert(name.to_owned(), public.clone());
                        to_own.insert(public, name.to_owned());
                    }
                }
                return Self { to_public, to_own };
            }
        }
    }

    /// The public name of the server's `name`.
    pub fn public(&self, name: &str) -> Option<&str> {
        self.to_public.get(name).map(String::as_str)
    }

    /// The server's own name behind `public`.
    pub fn own(&self, public: &str) -> Option<&str> {
        self.to_own.get(public).map(String::as_str)
    }
}

/// The public URI of `server`'s resource `uri`.
pub fn public_uri(server: &str, uri: &str) -> String {
    format!("{RESOURCE_PREFIX}{server}/{uri}")
}

/// The server and its own URI behind a public resource URI.
pub fn split_uri(public: &str) -> Option<(&str, &str)> {
    public.strip_prefix(RESOURCE_PREFIX)?.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_server_and_name() {
        assert_eq!(public("files", "read_file"), "files__read_file");
        assert_eq!(split("files__read_file"), Some(("files", "read_file")));
        assert_eq!(
            split("files__read__twice"),
            Some(("files", "read__twice")),
            "server names never hold `__`, so the first one splits"
        );
        let exact = "x".repeat(MAX_NAME - "files__".len());
        assert_eq!(public("files", &exact).len(), MAX_NAME);
        assert_eq!(public("files", &exact), format!("files__{exact}"));
    }

    #[test]
    fn long_names_are_shortened_to_64_with_a_hash() {
        let long = format!("{}_tool", "very_long_descriptive_name_".repeat(4));
        let p = public("github-enterprise", &long);
        assert_eq!(p.len(), MAX_NAME);
        assert!(p.starts_with("github-enterprise__very_long_descriptive"));
        assert_eq!(p, public("github-enterprise", &long), "deterministic");
        // Same head, different tail: different names.
        let other = format!("{}_other", "very_long_descriptive_name_".repeat(4));
        assert_ne!(p, public("github-enterprise", &other));
        // Multibyte names are cut on a character boundary.
        let wide = "é".repeat(60);
        let p = public("s", &wide);
        assert!(p.len() <= MAX_NAME);
    }

    #[test]
    fn clashes_widen_the_hash_and_both_ways_resolve() {
        let long = "a".repeat(80);
        let shortened = public("s", &long);
        // A tool whose own name is exactly the shortened form of another's.
        let impostor = shortened.strip_prefix("s__").unwrap().to_owned();
        let names = ServerNames::new("s", [long.as_str(), impostor.as_str(), "plain"]);
        let long_public = names.public(&long).unwrap().to_owned();
        assert_ne!(
            long_public, shortened,
            "the shortened one takes a longer hash"
        );
        assert!(long_public.len() <= MAX_NAME);
        assert_eq!(names.public(&impostor), Some(shortened.as_str()));
        assert_eq!(names.own(&long_public), Some(long.as_str()));
        assert_eq!(names.own(&shortened), Some(impostor.as_str()));
        assert_eq!(names.own("s__plain"), Some("plain"));
        assert_eq!(names.own("s__unknown"), None);
    }

    #[test]
    fn resource_uris_route_back() {
        let p = public_uri("files", "file:///tmp/a b.txt");
        assert_eq!(p, "portcullis://files/file:///tmp/a b.txt");
        assert_eq!(split_uri(&p), Some(("files", "file:///tmp/a b.txt")));
        assert_eq!(split_uri("file:///x"), None);
    }

    proptest::proptest! {
        #[test]
        fn public_names_fit_and_are_unique(names in proptest::collection::vec("[a-z_]{1,90}", 1..20)) {
            let table = ServerNames::new("server-1", names.iter().map(String::as_str));
            let mut seen = std::collections::HashSet::new();
            for name in &names {
                let p = table.public(name).unwrap();
                proptest::prop_assert!(p.len() <= MAX_NAME);
                proptest::prop_assert_eq!(table.own(p), Some(name.as_str()));
                seen.insert(p.to_owned());
            }
            let distinct: std::collections::HashSet<&String> = names.iter().collect();
            proptest::prop_assert_eq!(seen.len(), distinct.len());
        }
    }
}
