//! The configuration file read into a tree that remembers, for every scalar, what the file
//! said before `${VAR}` interpolation and which values came from the environment; and a serde
//! `Deserializer` over that tree.
//!
//! Owning the tree (instead of deserializing the text in one pass) is what lets a check report
//! every problem of a file at once — a bad value is reported with the key it sits under, taken
//! out of the tree, and the rest deserialized again — and what keeps interpolated values (often
//! credentials) out of every message: errors quote a scalar as the file wrote it (`${CORP_KEY}`),
//! and [`Tree::redact`] scrubs any interpolated value a message still carries.

use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// Most issues one file reports before the rest are left unsaid.
const MAX_ISSUES: usize = 100;

/// One node of the file.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// An absent value: a sole `${VAR}` whose variable is unset (the setting is left out).
    Unset(String),
    /// A scalar after interpolation.
    Scalar(Scalar),
    /// A sequence; each element keeps its position in the file for error paths.
    Seq(Vec<(usize, Node)>),
    /// A mapping with scalar keys, in file order.
    Map(Vec<(String, Node)>),
}

/// A scalar after interpolation.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    /// The value.
    text: String,
    /// Plain (unquoted, untagged) scalars are typed by their text: `5`, `true`, `null`.
    plain: bool,
    /// What the file said, when interpolation changed it.
    raw: Option<String>,
    /// Values substituted from the environment, with the reference they came from.
    values: Vec<(String, String)>,
}

impl Scalar {
    /// The scalar as messages may show it: the file's text when interpolated.
    fn shown(&self) -> &str {
        self.raw.as_deref().unwrap_or(&self.text)
    }

    fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

/// A step from a node to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The whole file, and what reading it found.
#[derive(Debug)]
pub(crate) struct Tree {
    root: Node,
    /// Problems found while reading and interpolating (malformed references, unset variables
    /// inside longer values, duplicate keys), each with its key.
    pub(crate) issues: Vec<(String, String)>,
}

/// Reads YAML text and interpolates `${…}` references from `env`.
pub(crate) fn read(text: &str, env: &HashMap<String, String>) -> Result<Tree, String> {
    let mut events = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, _span) = item.map_err(|e| e.to_string())?;
        events.push(event);
    }
    let mut builder = Builder {
        events: events.into_iter(),
        anchors: HashMap::new(),
        env,
        issues: Vec::new(),
        path: String::new(),
    };
    let root = builder.document()?;
    Ok(Tree {
        root,
        issues: builder.issues,
    })
}

struct Builder<'a, 'e> {
    events: std::vec::IntoIter<Event<'a>>,
    anchors: HashMap<usize, Node>,
    env: &'e HashMap<String, String>,
    issues: Vec<(String, String)>,
    path: String,
}

impl<'a> Builder<'a, '_> {
    fn document(&mut self) -> Result<Node, String> {
        let mut root = None;
        while let Some(event) = self.events.next() {
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
                Event::DocumentStart(..) => {
                    if root.is_some() {
                        return Err("the file holds more than one YAML document".to_owned());
                    }
                    match self.events.next() {
                        Some(Event::DocumentEnd) | None => root = Some(Node::Map(Vec::new())),
                        Some(e) => root = Some(self.node(e)?),
                    }
                }
                _ => {}
            }
        }
        Ok(root.unwrap_or(Node::Map(Vec::new())))
    }

    fn next(&mut self) -> Result<Event<'a>, String> {
        loop {
            match self.events.next() {
                #[allow(unreachable_patterns)]
                Some(Event::Comment(..)) => {}
                Some(e) => return Ok(e),
                None => return Err("unexpected end of the file".to_owned()),
            }
        }
    }

    fn node(&mut self, event: Event<'a>) -> Result<Node, String> {
        let (node, anchor) = match event {
            Event::Alias(id) => {
                return self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("{}: unknown alias", self.shown_path()));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && tag.is_none();
                (self.scalar(&text, plain), anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                let base = self.path.clone();
                loop {
                    let e = self.next()?;
                    if matches!(e, Event::SequenceEnd) {
                        break;
                    }
                    self.path = format!("{base}[{}]", items.len());
                    let n = self.node(e)?;
                    items.push((items.len(), n));
                }
                self.path = base;
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                let base = self.path.clone();
                loop {
                    let e = self.next()?;
                    let key = match e {
                        Event::MappingEnd => break,
                        Event::Scalar(text, ..) => text.into_owned(),
                        _ => {
                            return Err(format!(
                                "{}: mapping keys must be plain text",
                                self.shown_path()
                            ));
                        }
                    };
                    self.path = if base.is_empty() {
                        key.clone()
                    } else {
                        format!("{base}.{key}")
                    };
                    let e = self.next()?;
                    let value = self.node(e)?;
                    if key == "<<" {
                        merge(&mut entries, value);
                        continue;
                    }
                    if entries.iter().any(|(k, _)| *k == key) {
                        self.issues
                            .push((self.path.clone(), "duplicate key".to_owned()));
                        entries.retain(|(k, _)| *k != key);
                    }
                    entries.push((key, value));
                }
                self.path = base;
                (Node::Map(entries), anchor)
            }
            other => return Err(format!("unexpected YAML event {other:?}")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn shown_path(&self) -> &str {
        if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        }
    }

    fn scalar(&mut self, text: &str, plain: bool) -> Node {
        if !text.contains('$') {
            return Node::Scalar(Scalar {
                text: text.to_owned(),
                plain,
                raw: None,
                values: Vec::new(),
            });
        }
        if let Some(name) = sole_reference(text)
            && !self.env.contains_key(name)
        {
            return Node::Unset(name.to_owned());
        }
        let mut out = Interpolation {
            env: self.env,
            values: Vec::new(),
            unset: Vec::new(),
            changed: false,
        };
        match out.expand(text, 0) {
            Ok(value) => {
                for name in &out.unset {
                    self.issues
                        .push((self.path.clone(), format!("`${{{name}}}` is not set")));
                }
                let changed = out.changed;
                Node::Scalar(Scalar {
                    text: value,
                    plain,
                    raw: changed.then(|| text.to_owned()),
                    values: out.values,
                })
            }
            Err(message) => {
                self.issues.push((self.path.clone(), message));
                Node::Unset(String::new())
            }
        }
    }
}

/// `<<: *base` merges the entries of `base` that the mapping does not set itself.
fn merge(entries: &mut Vec<(String, Node)>, value: Node) {
    let sources = match value {
        Node::Map(m) => vec![m],
        Node::Seq(items) => items
            .into_iter()
            .filter_map(|(_, n)| match n {
                Node::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for source in sources {
        for (k, v) in source {
            if !entries.iter().any(|(e, _)| *e == k) {
                entries.push((k, v));
            }
        }
    }
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// `NAME` when `text` is exactly `${NAME}` or `$NAME`.
fn sole_reference(text: &str) -> Option<&str> {
    let body = text.strip_prefix('$')?;
    let name = match body.strip_prefix('{') {
        Some(b) => b.strip_suffix('}')?,
        None => body,
    };
    let mut chars = name.chars();
    (chars.next().is_some_and(is_name_start) && chars.all(is_name)).then_some(name)
}

/// Compose-style interpolation of one scalar.
struct Interpolation<'e> {
    env: &'e HashMap<String, String>,
    /// Values taken from the environment (`(value, "${NAME}")`).
    values: Vec<(String, String)>,
    /// Variables referenced without a default and not set.
    unset: Vec<String>,
    changed: bool,
}

impl Interpolation<'_> {
    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name).cloned();
        if let Some(v) = &value
            && !v.is_empty()
        {
            self.values.push((v.clone(), format!("${{{name}}}")));
        }
        value
    }

    fn expand(&mut self, text: &str, depth: usize) -> Result<String, String> {
        if depth > 8 {
            return Err("interpolation nested too deeply".to_owned());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                self.changed = true;
                rest = r;
            } else if let Some(body) = after.strip_prefix('{') {
                let close = closing_brace(body)
                    .ok_or_else(|| format!("`${{{body}` has no closing `}}`"))?;
                let reference = &body[..close];
                out.push_str(&self.reference(reference, depth)?);
                self.changed = true;
                rest = &body[close + 1..];
            } else if after.starts_with(is_name_start) {
                let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
                let name = &after[..end];
                match self.lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => self.unset.push(name.to_owned()),
                }
                self.changed = true;
                rest = &after[end..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The body of `${…}`: `NAME`, `NAME:-default`, `NAME-default`, `NAME:?error`,
    /// `NAME?error`, `NAME:+alternative`, `NAME+alternative`.
    fn reference(&mut self, body: &str, depth: usize) -> Result<String, String> {
        let end = body.find(|c: char| !is_name(c)).unwrap_or(body.len());
        let name = &body[..end];
        if !name.starts_with(is_name_start) {
            return Err(format!("`${{{body}}}` is not a valid reference"));
        }
        let op = &body[end..];
        let value = self.env.get(name).map(String::as_str);
        let (colon, op) = match op.strip_prefix(':') {
            Some(o) => (true, o),
            None => (false, op),
        };
        let missing = value.is_none() || (colon && value == Some(""));
        let Some(kind) = op.chars().next() else {
            if colon {
                return Err(format!("`${{{body}}}` is not a valid reference"));
            }
            return Ok(match self.lookup(name) {
                Some(v) => v,
                None => {
                    self.unset.push(name.to_owned());
                    String::new()
                }
            });
        };
        let arg = &op[1..];
        match kind {
            '-' if missing => self.expand(arg, depth + 1),
            '-' => Ok(self.lookup(name).unwrap_or_default()),
            '?' if missing => {
                let hint = self.expand(arg, depth + 1)?;
                Err(if hint.is_empty() {
                    format!("`${{{name}}}` is not set")
                } else {
                    format!("`${{{name}}}` is not set: {hint}")
                })
            }
            '?' => Ok(self.lookup(name).unwrap_or_default()),
            '+' if missing => Ok(String::new()),
            '+' => self.expand(arg, depth + 1),
            _ => Err(format!("`${{{body}}}` is not a valid reference")),
        }
    }
}

/// The index of the `}` closing a reference body, counting nested `${`.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

impl Tree {
    /// Deserializes the whole file into `T`, reporting every problem: each one is recorded with
    /// its key, the offending entry is taken out, and the rest is read again.
    pub(crate) fn deserialize_all<T: de::DeserializeOwned>(
        &mut self,
    ) -> (Option<T>, Vec<(String, String)>) {
        let mut issues = Vec::new();
        let mut dropped: Vec<Vec<Step>> = Vec::new();
        loop {
            match T::deserialize(De {
                node: &self.root,
                at: &[],
                path: String::new(),
            }) {
                Ok(v) => return (Some(v), issues),
                Err(e) => {
                    let at = e.at.unwrap_or_default();
                    let path = if e.path.is_empty() {
                        "(top level)".to_owned()
                    } else {
                        e.path.clone()
                    };
                    let follows_drop = e
                        .message
                        .strip_prefix("missing field `")
                        .and_then(|m| m.split_once('`'))
                        .is_some_and(|(field, _)| {
                            let mut child = at.clone();
                            child.push(Step::Key(field.to_owned()));
                            dropped.contains(&child)
                        });
                    if !follows_drop {
                        let message = self.redact_at(&at, &e.message);
                        issues.push((path, message));
                    }
                    if at.is_empty() || issues.len() >= MAX_ISSUES || !remove(&mut self.root, &at) {
                        return (None, issues);
                    }
                    dropped.push(at);
                }
            }
        }
    }

    /// `message` about the node at `at`, with every interpolated value under it (and every long
    /// one anywhere) replaced by what the file wrote.
    fn redact_at(&self, at: &[Step], message: &str) -> String {
        let mut pairs = Vec::new();
        let mut unset = Vec::new();
        if let Some(node) = find(&self.root, at) {
            collect(node, &mut pairs, 0);
            unset_names(node, &mut unset);
        }
        collect(&self.root, &mut pairs, LONG);
        with_unset(redact(message, pairs), &unset)
    }

    /// `message` about `key` (`providers.corp.base_url`, `routes.r.targets[0]`), redacted as
    /// [`Tree::redact_at`] does, and naming any unset variable that left a setting out.
    pub(crate) fn redact(&self, key: &str, message: &str) -> String {
        let node = locate(&self.root, key);
        let mut pairs = Vec::new();
        let mut unset = Vec::new();
        if let Some(node) = node {
            collect(node, &mut pairs, 0);
            unset_names(node, &mut unset);
        }
        collect(&self.root, &mut pairs, LONG);
        with_unset(redact(message, pairs), &unset)
    }
}

/// `message`, naming the unset variables that left settings under its key out.
fn with_unset(mut message: String, unset: &[String]) -> String {
    if !unset.is_empty() {
        let names: Vec<String> = unset.iter().map(|n| format!("`${{{n}}}`")).collect();
        message.push_str(&format!(" ({} is not set)", names.join(", ")));
    }
    message
}

/// Values at least this long are redacted wherever a message shows them.
const LONG: usize = 8;

fn collect(node: &Node, pairs: &mut Vec<(String, String)>, min_len: usize) {
    match node {
        Node::Unset(_) => {}
        Node::Scalar(s) => {
            if let Some(raw) = &s.raw
                && s.text.len() >= min_len.max(1)
                && s.text != *raw
            {
                pairs.push((s.text.clone(), raw.clone()));
            }
            for (value, reference) in &s.values {
                if value.len() >= min_len.max(1) {
                    pairs.push((value.clone(), reference.clone()));
                }
            }
        }
        Node::Seq(items) => items.iter().for_each(|(_, n)| collect(n, pairs, min_len)),
        Node::Map(entries) => entries.iter().for_each(|(_, n)| collect(n, pairs, min_len)),
    }
}

fn unset_names(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Unset(name) if !name.is_empty() => {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        Node::Unset(_) | Node::Scalar(_) => {}
        Node::Seq(items) => items.iter().for_each(|(_, n)| unset_names(n, out)),
        Node::Map(entries) => entries.iter().for_each(|(_, n)| unset_names(n, out)),
    }
}

/// Replaces each value with its reference in one pass, longest value first. Values shorter
/// than [`LONG`] are replaced only where they stand alone (not inside a longer word), so a
/// short value does not mangle the rest of the message.
fn redact(message: &str, mut pairs: Vec<(String, String)>) -> String {
    if pairs.is_empty() {
        return message.to_owned();
    }
    pairs.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    pairs.dedup();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    'outer: while i < message.len() {
        for (value, reference) in &pairs {
            if message[i..].starts_with(value.as_str()) {
                let end = i + value.len();
                let alone = value.len() >= LONG
                    || (!message[..i].ends_with(|c: char| c.is_alphanumeric())
                        && !message[end..].starts_with(|c: char| c.is_alphanumeric()));
                if alone {
                    out.push_str(reference);
                    i = end;
                    continue 'outer;
                }
            }
        }
        let Some(c) = message[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn find<'n>(root: &'n Node, at: &[Step]) -> Option<&'n Node> {
    let mut node = root;
    for step in at {
        node = match (node, step) {
            (Node::Map(entries), Step::Key(k)) => &entries.iter().find(|(e, _)| e == k)?.1,
            (Node::Seq(items), Step::Index(i)) => &items.get(*i)?.1,
            _ => return None,
        };
    }
    Some(node)
}

/// The node a dotted key names (`providers.corp.base_url`, `routes.r.targets[0]`); map keys
/// may themselves contain dots (`prices.openai/gpt-4.1`), so the longest matching key wins.
fn locate<'n>(root: &'n Node, key: &str) -> Option<&'n Node> {
    let mut node = root;
    let mut rest = key;
    while !rest.is_empty() {
        match node {
            Node::Map(entries) => {
                let best = entries
                    .iter()
                    .filter(|(k, _)| {
                        rest.strip_prefix(k.as_str()).is_some_and(|r| {
                            r.is_empty() || r.starts_with('.') || r.starts_with('[')
                        })
                    })
                    .max_by_key(|(k, _)| k.len())?;
                rest = &rest[best.0.len()..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
                node = &best.1;
            }
            Node::Seq(items) => {
                let inner = rest.strip_prefix('[')?;
                let close = inner.find(']')?;
                let index: usize = inner[..close].parse().ok()?;
                node = &items.iter().find(|(i, _)| *i == index)?.1;
                rest = &inner[close + 1..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
            }
            _ => return Some(node),
        }
    }
    Some(node)
}

fn remove(root: &mut Node, at: &[Step]) -> bool {
    let Some((last, parents)) = at.split_last() else {
        return false;
    };
    let mut node = root;
    for step in parents {
        node = match (node, step) {
            (Node::Map(entries), Step::Key(k)) => match entries.iter_mut().find(|(e, _)| e == k) {
                Some((_, n)) => n,
                None => return false,
            },
            (Node::Seq(items), Step::Index(i)) => match items.get_mut(*i) {
                Some((_, n)) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (node, last) {
        (Node::Map(entries), Step::Key(k)) => {
            let before = entries.len();
            entries.retain(|(e, _)| e != k);
            entries.len() < before
        }
        (Node::Seq(items), Step::Index(i)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// A deserialization error, and where in the tree it arose.
#[derive(Debug)]
pub(crate) struct Error {
    message: String,
    /// The entry to take out before reading again (`None` until a container sets it).
    at: Option<Vec<Step>>,
    /// The key to report it under.
    path: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            at: None,
            path: String::new(),
        }
    }
}

impl Error {
    fn located(mut self, at: impl FnOnce() -> Vec<Step>, path: impl FnOnce() -> String) -> Self {
        if self.at.is_none() {
            self.at = Some(at());
            self.path = path();
        }
        self
    }
}

/// Deserializes one node.
struct De<'n, 'p> {
    node: &'n Node,
    at: &'p [Step],
    path: String,
}

fn child_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

impl De<'_, '_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match self.node {
            Node::Unset(_) => Unexpected::Unit,
            Node::Scalar(s) if s.is_null() => Unexpected::Unit,
            Node::Scalar(s) => Unexpected::Str(s.shown()),
            Node::Seq(_) => Unexpected::Seq,
            Node::Map(_) => Unexpected::Map,
        }
    }

    fn is_null(&self) -> bool {
        match self.node {
            Node::Unset(_) => true,
            Node::Scalar(s) => s.is_null(),
            _ => false,
        }
    }

    fn scalar(&self) -> Option<&Scalar> {
        match self.node {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self) -> Option<i128> {
        let s = self.scalar()?;
        let t = s.text.trim();
        let (negative, digits) = match t.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let magnitude = if let Some(h) = digits.strip_prefix("0x") {
            i128::from_str_radix(h, 16).ok()?
        } else if let Some(o) = digits.strip_prefix("0o") {
            i128::from_str_radix(o, 8).ok()?
        } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()?
        } else {
            return None;
        };
        Some(if negative { -magnitude } else { magnitude })
    }

    fn float(&self) -> Option<f64> {
        let s = self.scalar()?;
        let t = s.text.trim();
        match t {
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
            _ => {}
        }
        let numeric = t
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if !numeric {
            return self.int().map(|i| i as f64);
        }
        t.parse().ok().or_else(|| self.int().map(|i| i as f64))
    }

    fn bool(&self) -> Option<bool> {
        match self.scalar()?.text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.int() {
            Some(i) if i >= 0 => match u64::try_from(i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => Err(de::Error::invalid_value(self.unexpected(), &visitor)),
            },
            Some(i) => match i64::try_from(i) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => Err(de::Error::invalid_value(self.unexpected(), &visitor)),
            },
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }
}

macro_rules! forward_integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.integer(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for De<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Unset(_) => visitor.visit_unit(),
            Node::Scalar(s) if s.plain => {
                if s.is_null() {
                    visitor.visit_unit()
                } else if let Some(b) = self.bool() {
                    visitor.visit_bool(b)
                } else if self.int().is_some() {
                    self.integer(visitor)
                } else if let Some(f) = self.float().filter(|_| {
                    s.text
                        .trim_start_matches(['-', '+'])
                        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
                }) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(&s.text)
                }
            }
            Node::Scalar(s) => visitor.visit_str(&s.text),
            Node::Seq(_) => self.deserialize_seq(visitor),
            Node::Map(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    forward_integer!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.float() {
            Some(f) => visitor.visit_f64(f),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Scalar(s) => visitor.visit_str(&s.text),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            Err(de::Error::invalid_type(self.unexpected(), &visitor))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
                at: self.at,
                path: &self.path,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
                at: self.at,
                path: &self.path,
            }),
            // `openai:` with nothing under it is an empty block.
            _ if self.is_null() => visitor.visit_map(Map {
                entries: [].iter(),
                value: None,
                at: self.at,
                path: &self.path,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Scalar(s) => visitor.visit_enum(s.text.as_str().into_deserializer()),
            Node::Map(entries) if entries.len() == 1 => {
                let (key, node) = &entries[0];
                let mut at = self.at.to_vec();
                at.push(Step::Key(key.clone()));
                visitor.visit_enum(Enum {
                    key,
                    node,
                    at,
                    path: child_path(&self.path, key),
                })
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct Seq<'n, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'n, (usize, Node)>>,
    at: &'p [Step],
    path: &'p str,
}

impl<'de> SeqAccess<'de> for Seq<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((position, (index, node))) = self.items.next() else {
            return Ok(None);
        };
        let mut at = self.at.to_vec();
        at.push(Step::Index(position));
        let path = format!("{}[{index}]", self.path);
        let de = De {
            node,
            at: &at,
            path: path.clone(),
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.located(|| at.clone(), || path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'n, 'p> {
    entries: std::slice::Iter<'n, (String, Node)>,
    value: Option<&'n (String, Node)>,
    at: &'p [Step],
    path: &'p str,
}

impl<'de> MapAccess<'de> for Map<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: de::value::StrDeserializer<'_, Error> = entry.0.as_str().into_deserializer();
        seed.deserialize(key).map(Some).map_err(|e| {
            let mut at = self.at.to_vec();
            at.push(Step::Key(entry.0.clone()));
            e.located(|| at, || self.path.to_owned())
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, node)) = self.value.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        let mut at = self.at.to_vec();
        at.push(Step::Key(key.clone()));
        let path = child_path(self.path, key);
        let de = De {
            node,
            at: &at,
            path: path.clone(),
        };
        seed.deserialize(de)
            .map_err(|e| e.located(|| at.clone(), || path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'n> {
    key: &'n str,
    node: &'n Node,
    at: Vec<Step>,
    path: String,
}

impl<'de, 'n> EnumAccess<'de> for Enum<'n> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let key: de::value::StrDeserializer<'_, Error> = self.key.into_deserializer();
        let v = seed.deserialize(key)?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Enum<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self.de())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.de())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.de().deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.de().deserialize_map(visitor)
    }
}

impl Enum<'_> {
    fn de(&self) -> De<'_, '_> {
        De {
            node: self.node,
            at: &self.at,
            path: self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compose_forms() {
        let e = env(&[("SET", "value"), ("EMPTY", "")]);
        let cases = [
            ("${SET}", "value"),
            ("$SET/x", "value/x"),
            ("a$$b", "a$b"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY-fallback}", ""),
            ("${SET:+alt}", "alt"),
            ("${MISSING:+alt}", ""),
            ("${MISSING:-${SET}}", "value"),
            ("x${SET?must}y", "xvaluey"),
        ];
        for (text, want) in cases {
            let mut i = Interpolation {
                env: &e,
                values: Vec::new(),
                unset: Vec::new(),
                changed: false,
            };
            assert_eq!(i.expand(text, 0).unwrap(), want, "{text}");
        }
        let mut i = Interpolation {
            env: &e,
            values: Vec::new(),
            unset: Vec::new(),
            changed: false,
        };
        assert!(
            i.expand("${MISSING:?set it}", 0)
                .unwrap_err()
                .contains("set it")
        );
    }

    #[test]
    fn redaction_replaces_whole_values_only_when_short() {
        let pairs = vec![
            ("s3cr3t-value".to_owned(), "${K}".to_owned()),
            ("1".to_owned(), "${N}".to_owned()),
        ];
        assert_eq!(
            redact("https://u:s3cr3t-value@h at least 10, got 1", pairs),
            "https://u:${K}@h at least 10, got ${N}"
        );
    }
}
