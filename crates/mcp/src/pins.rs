//! Tool pinning, against servers that change a tool after it was trusted ("rug pulls").
//!
//! Each tool a server lists has a **fingerprint**: the hex SHA-256 of the canonical JSON of its
//! definition — the members `name`, `title`, `description`, `inputSchema`, `outputSchema` and
//! `annotations` ([`PINNED_MEMBERS`]), keys sorted at every depth, no whitespace — so neither
//! formatting nor key order matters, and `_meta`, `icons` or members a later revision adds do
//! not count. The fingerprint a tool has when first seen is **pinned**; a definition whose
//! fingerprint differs from the pin is withheld from clients (left out of lists, its calls
//! refused) until an admin approves it, which pins the new fingerprint.
//!
//! Pins are kept per **scope** ([`Key`]): a server's shared connection is one (`""`), each
//! instance of it that carries a credential of its own (`crate::credentials`) another, named by
//! the instance's identity key ([`crate::hub::Server::scope`]). An upstream may legitimately
//! list different definitions to different credentials, so each scope is pinned on its own: a
//! definition one instance lists is never compared with another's pin, and a change withholds
//! the tool only from the callers that reach the server through that instance.
//!
//! The decision is pure ([`verdict`]); the pins live in the database, behind [`PinLedger`], and
//! in memory ([`Pins`]): a listing is recorded once, when it is first used after being fetched
//! (so only a fetch, never a call, waits on the database), and the in-memory pins are reloaded
//! from the database in the background ([`Pins::refresh`]), so that an approval made on one
//! replica takes effect on the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::hub::{Hub, ListError, ListKind, Listing, Server};

/// The members of a tool's definition its fingerprint covers.
pub const PINNED_MEMBERS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// The fingerprint of a tool's definition (see the module documentation); `None` when it is
/// not a JSON object.
pub fn fingerprint(definition: &RawValue) -> Option<String> {
    let map: Map<String, Value> = serde_json::from_str(definition.get()).ok()?;
    let covered: Map<String, Value> = map
        .into_iter()
        .filter(|(k, _)| PINNED_MEMBERS.contains(&k.as_str()))
        .collect();
    let mut text = String::with_capacity(256);
    canonical(&Value::Object(covered), &mut text);
    let hash = Sha256::digest(text.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Some(out)
}

/// `value` as canonical JSON: object keys sorted, no whitespace.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether clients may see a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its definition is the pinned one (or it has never been seen: it is pinned as it is).
    Show,
    /// Its definition changed since it was pinned and awaits approval.
    Withhold,
}

/// The decision for a tool whose definition has fingerprint `seen`, pinned at `pinned`.
pub fn verdict(pinned: Option<&str>, seen: &str) -> Verdict {
    match pinned {
        Some(pinned) if pinned != seen => Verdict::Withhold,
        _ => Verdict::Show,
    }
}

/// A tool as a server lists it now.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The server's own name of the tool.
    pub tool: &'a str,
    /// The fingerprint of its definition.
    pub fingerprint: &'a str,
    /// Its definition as the server sent it.
    pub definition: &'a str,
}

/// Pins could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tool pins unavailable: {0}")]
pub struct PinError(pub String);

/// Where pins are kept (the gateway's database).
#[async_trait::async_trait]
pub trait PinLedger: Send + Sync + std::fmt::Debug {
    /// Records what `server` lists now in `scope` (tools seen the first time in that scope are
    /// pinned as they are) and returns the pinned fingerprint of each of its tools there, by
    /// tool.
    async fn observe(
        &self,
        server: &str,
        scope: &str,
        seen: &[Seen<'_>],
    ) -> Result<HashMap<String, String>, PinError>;

    /// Every pinned fingerprint, by server and scope, then tool.
    async fn load(&self) -> Result<HashMap<Key, HashMap<String, String>>, PinError>;
}

/// Whose pins: a server and a scope (`""` for its shared connection, else the identity key of
/// an instance carrying a credential of its own).
pub type Key = (String, String);

fn key(server: &str, scope: &str) -> Key {
    (server.to_owned(), scope.to_owned())
}

/// The fingerprints of one listing's tools, by the server's own name.
pub type Fingerprints = HashMap<String, String>;

/// What is told of each changed definition withheld: the server's name.
struct WithheldHook(Box<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for WithheldHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithheldHook")
    }
}

/// The pins in memory, over a [`PinLedger`].
#[derive(Debug)]
pub struct Pins {
    ledger: Arc<dyn PinLedger>,
    /// Pinned fingerprints, by server and scope, then tool.
    view: RwLock<HashMap<Key, HashMap<String, String>>>,
    /// The changed definitions already reported (server, scope, tool, fingerprint), so each
    /// is reported once per process.
    reported: Mutex<HashSet<(String, String, String, String)>>,
    /// Told of each changed definition as it is first withheld (the metrics).
    on_withheld: OnceLock<WithheldHook>,
    /// The fingerprints last recorded in the ledger, by server and scope: a listing fetched
    /// again unchanged (every `list_ttl`, or on each request with `list_ttl: 0s`) is not
    /// written again.
    recorded: Mutex<HashMap<Key, Fingerprints>>,
}

impl Pins {
    /// Pins kept in `ledger`; nothing is known until [`Pins::refresh`] or a listing is
    /// recorded.
    pub fn new(ledger: Arc<dyn PinLedger>) -> Self {
        Self {
            ledger,
            view: RwLock::new(HashMap::new()),
            reported: Mutex::new(HashSet::new()),
            on_withheld: OnceLock::new(),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Reloads every pin from the ledger. On failure the pins in memory stay.
    pub async fn refresh(&self) -> Result<(), PinError> {
        let all = self.ledger.load().await?;
        if let Ok(mut view) = self.view.write() {
            *view = all;
        }
        Ok(())
    }

    /// Pins `fingerprint` for `server`'s `tool` in `scope` in memory (after an approval).
    pub fn pin(&self, server: &str, scope: &str, tool: &str, fingerprint: &str) {
        if let Ok(mut view) = self.view.write() {
            view.entry(key(server, scope))
                .or_default()
                .insert(tool.to_owned(), fingerprint.to_owned());
        }
    }

    /// The pinned fingerprint of `server`'s `tool` in `scope`, as this process knows it.
    pub fn pinned(&self, server: &str, scope: &str, tool: &str) -> Option<String> {
        let view = self.view.read().ok()?;
        view.get(&key(server, scope))?.get(tool).cloned()
    }

    /// The decision for `server`'s `tool` listed in `scope` with fingerprint `seen`.
    pub fn verdict(&self, server: &str, scope: &str, tool: &str, seen: &str) -> Verdict {
        let Ok(view) = self.view.read() else {
            return Verdict::Withhold;
        };
        verdict(
            view.get(&key(server, scope))
                .and_then(|t| t.get(tool))
                .map(String::as_str),
            seen,
        )
    }

    /// Records `listing`, `server`'s tools as fetched in `scope`, in the ledger and returns
    /// their fingerprints. If the ledger fails, tools this process has no pin for are pinned in
    /// memory as they are, and the ledger is tried again with the next fetch.
    pub async fn observe(&self, server: &str, scope: &str, listing: &Listing) -> Fingerprints {
        let mut fingerprints = Fingerprints::with_capacity(listing.entries.len());
        for entry in &listing.entries {
            if let Some(fp) = fingerprint(&entry.direct) {
                fingerprints.insert(entry.own.clone(), fp);
            }
        }
        let seen: Vec<Seen<'_>> = listing
            .entries
            .iter()
            .filter_map(|e| {
                Some(Seen {
                    tool: &e.own,
                    fingerprint: fingerprints.get(&e.own)?,
                    definition: e.direct.get(),
                })
            })
            .collect();
        let unchanged = self
            .recorded
            .lock()
            .is_ok_and(|recorded| recorded.get(&key(server, scope)) == Some(&fingerprints));
        let recorded = if unchanged {
            // Already in the ledger as it is; the pins in memory came with it.
            Ok(None)
        } else {
            self.ledger.observe(server, scope, &seen).await.map(Some)
        };
        match recorded {
            Ok(None) => {}
            Ok(Some(pinned)) => {
                if let Ok(mut view) = self.view.write() {
                    view.insert(key(server, scope), pinned);
                }
                if let Ok(mut recorded) = self.recorded.lock() {
                    recorded.insert(key(server, scope), fingerprints.clone());
                }
            }
            Err(e) => {
                tracing::error!(server, scope, "MCP tool pins not recorded: {e}");
                if let Ok(mut view) = self.view.write() {
                    let known = view.entry(key(server, scope)).or_default();
                    for (tool, fp) in &fingerprints {
                        known.entry(tool.clone()).or_insert_with(|| fp.clone());
                    }
                }
            }
        }
        for (tool, fp) in &fingerprints {
            if self.verdict(server, scope, tool, fp) == Verdict::Withhold {
                self.report(server, scope, tool, fp);
            }
        }
        fingerprints
    }

    /// Calls `hook` with the server's name whenever a changed definition is first withheld
    /// (once per definition, as it is logged); only the first hook set is kept.
    pub fn on_withheld(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_withheld.set(WithheldHook(Box::new(hook)));
    }

    fn report(&self, server: &str, scope: &str, tool: &str, fingerprint: &str) {
        let Ok(mut reported) = self.reported.lock() else {
            return;
        };
        if reported.insert((
            server.to_owned(),
            scope.to_owned(),
            tool.to_owned(),
            fingerprint.to_owned(),
        )) {
            tracing::warn!(
                server,
                scope,
                tool,
                fingerprint,
                "MCP tool definition changed since it was pinned: withheld from clients until \
                 an admin approves it (POST /admin/mcp-tools/{server}/{tool}/approve)"
            );
            if let Some(hook) = self.on_withheld.get() {
                (hook.0)(server);
            }
        }
    }
}

impl Hub {
    /// The same hub with its tools pinned in `pins` (servers with `pin_tools: false` apart).
    pub fn with_pins(mut self, pins: Arc<Pins>) -> Self {
        self.pins = Some(pins);
        self
    }

    /// The pins this hub checks tools against, if any.
    pub fn pins(&self) -> Option<&Arc<Pins>> {
        self.pins.as_ref()
    }

    /// The fingerprints of `server`'s tools in `listing`, recorded in the pins the first time
    /// the listing is used; `None` when `server`'s tools are not pinned.
    pub(crate) async fn pinned<'l>(
        &self,
        server: &Server,
        listing: &'l Listing,
    ) -> Option<&'l Fingerprints> {
        let pins = self.pins.as_ref()?;
        if !server.spec.pin_tools {
            return None;
        }
        Some(
            listing
                .fingerprints
                .get_or_init(|| pins.observe(server.name(), &server.scope, listing))
                .await,
        )
    }

    /// Whether a call of `server`'s tool `own` may go to the server: always when its tools are
    /// not pinned; otherwise unless its listed definition is withheld. A tool the server does
    /// not list has no definition a client could have seen: its call goes on.
    pub(crate) async fn tool_callable(
        &self,
        server: &Server,
        own: &str,
    ) -> Result<bool, ListError> {
        if self.pins.is_none() || !server.spec.pin_tools {
            return Ok(true);
        }
        let listing = server.list(ListKind::Tools).await?;
        if listing.entry(own).is_none() {
            return Ok(true);
        }
        let pinned = self.pinned(server, &listing).await;
        Ok(self.shows_tool(server, pinned, own))
    }

    /// Whether clients may see `server`'s tool `own`, given its listing's `fingerprints`.
    pub(crate) fn shows_tool(
        &self,
        server: &Server,
        fingerprints: Option<&Fingerprints>,
        own: &str,
    ) -> bool {
        let (Some(pins), Some(fingerprints)) = (&self.pins, fingerprints) else {
            return true;
        };
        match fingerprints.get(own) {
            Some(fp) => pins.verdict(server.name(), &server.scope, own, fp) == Verdict::Show,
            // A definition that is not an object cannot be fingerprinted: it is not shown.
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(text: &str) -> String {
        fingerprint(&RawValue::from_string(text.to_owned()).unwrap()).unwrap()
    }

    #[test]
    fn key_order_and_whitespace_do_not_count() {
        let a = fp(
            r#"{"name":"add","description":"Adds.","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}}}}"#,
        );
        let b = fp(r#"{
            "inputSchema": {"properties": {"b": {"type": "number"}, "a": {"type": "number"}},
                            "type": "object"},
            "description": "Adds.",
            "name": "add"
        }"#);
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn what_the_model_reads_counts_and_metadata_does_not() {
        let base = fp(r#"{"name":"add","description":"Adds."}"#);
        assert_ne!(
            base,
            fp(r#"{"name":"add","description":"Adds. Also reads ~/.ssh."}"#)
        );
        assert_ne!(
            base,
            fp(r#"{"name":"add","description":"Adds.","title":"Add"}"#)
        );
        assert_ne!(
            base,
            fp(r#"{"name":"add","description":"Adds.","inputSchema":{"type":"object"}}"#)
        );
        assert_ne!(
            base,
            fp(r#"{"name":"add","description":"Adds.","annotations":{"destructiveHint":true}}"#)
        );
        assert_ne!(
            base,
            fp(r#"{"name":"add","description":"Adds.","outputSchema":{"type":"object"}}"#)
        );
        assert_eq!(
            base,
            fp(r#"{"name":"add","description":"Adds.","_meta":{"v":2},"icons":[{"src":"x"}]}"#)
        );
        // Array order counts: it is part of the value.
        assert_ne!(
            fp(r#"{"name":"a","inputSchema":{"required":["x","y"]}}"#),
            fp(r#"{"name":"a","inputSchema":{"required":["y","x"]}}"#)
        );
        assert!(fingerprint(&RawValue::from_string("[1]".into()).unwrap()).is_none());
    }

    #[test]
    fn a_changed_definition_is_withheld_and_an_unseen_one_shown() {
        assert_eq!(verdict(None, "aa"), Verdict::Show);
        assert_eq!(verdict(Some("aa"), "aa"), Verdict::Show);
        assert_eq!(verdict(Some("aa"), "bb"), Verdict::Withhold);
    }

    #[derive(Debug)]
    struct NoLedger;

    #[async_trait::async_trait]
    impl PinLedger for NoLedger {
        async fn observe(
            &self,
            _: &str,
            _: &str,
            _: &[Seen<'_>],
        ) -> Result<HashMap<String, String>, PinError> {
            Err(PinError("none".into()))
        }

        async fn load(&self) -> Result<HashMap<Key, HashMap<String, String>>, PinError> {
            Err(PinError("none".into()))
        }
    }

    /// Counts what reaches the ledger, and pins what it is shown.
    #[derive(Debug, Default)]
    struct CountingLedger(Mutex<usize>);

    #[async_trait::async_trait]
    impl PinLedger for CountingLedger {
        async fn observe(
            &self,
            _: &str,
            _: &str,
            seen: &[Seen<'_>],
        ) -> Result<HashMap<String, String>, PinError> {
            *self.0.lock().unwrap() += 1;
            Ok(seen
                .iter()
                .map(|s| (s.tool.to_owned(), s.fingerprint.to_owned()))
                .collect())
        }

        async fn load(&self) -> Result<HashMap<Key, HashMap<String, String>>, PinError> {
            Ok(HashMap::new())
        }
    }

    fn listing(description: &str) -> Listing {
        let tool =
            RawValue::from_string(format!(r#"{{"name":"add","description":"{description}"}}"#))
                .unwrap();
        crate::hub::build_listing("gh", crate::hub::ListKind::Tools, vec![tool])
    }

    #[tokio::test]
    async fn a_listing_fetched_again_unchanged_is_not_written_again() {
        let ledger = Arc::new(CountingLedger::default());
        let pins = Pins::new(ledger.clone());
        let writes = || *ledger.0.lock().unwrap();
        pins.observe("gh", "", &listing("Adds.")).await;
        assert_eq!(writes(), 1);
        pins.observe("gh", "", &listing("Adds.")).await;
        assert_eq!(writes(), 1, "unchanged: nothing to record");
        pins.observe("gh", "", &listing("Adds, then sends your keys away."))
            .await;
        assert_eq!(writes(), 2, "a change is recorded");
        pins.observe("gh", "", &listing("Adds.")).await;
        assert_eq!(writes(), 3, "and so is going back");
        pins.observe("gh", "mcpcred_1", &listing("Adds.")).await;
        assert_eq!(writes(), 4, "each scope is recorded on its own");
    }

    #[test]
    fn each_scope_is_decided_by_its_own_pins() {
        let pins = Pins::new(Arc::new(NoLedger));
        pins.pin("gh", "", "add", "aa");
        pins.pin("gh", "mcpcred_1", "add", "bb");
        // Each instance's definition is shown in its own scope, withheld in the other.
        assert_eq!(pins.verdict("gh", "", "add", "aa"), Verdict::Show);
        assert_eq!(pins.verdict("gh", "mcpcred_1", "add", "bb"), Verdict::Show);
        assert_eq!(pins.verdict("gh", "", "add", "bb"), Verdict::Withhold);
        assert_eq!(
            pins.verdict("gh", "mcpcred_1", "add", "aa"),
            Verdict::Withhold
        );
        // A scope with no pins yet pins what it first sees, whatever another scope pinned.
        assert_eq!(pins.verdict("gh", "mcpcred_2", "add", "cc"), Verdict::Show);
        assert_eq!(pins.pinned("gh", "mcpcred_1", "add").as_deref(), Some("bb"));
        assert_eq!(pins.pinned("other", "", "add"), None);
    }
}
