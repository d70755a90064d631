//! The near-opposite guard: a cached answer is never reused for a question that says the
//! opposite, however close the two embeddings are.
//!
//! Sentence embeddings place "How do I enable two-factor authentication?" and "How do I
//! disable two-factor authentication?" almost on top of each other, because they share every
//! word but one. The guard reads what embeddings blur: each conversation text gets a
//! [`Signature`] — computed once when an entry is stored (and kept with it, in memory and in
//! the persisted row) and once per lookup — and a match whose signature
//! [conflicts](Signature::conflict) with the request's is refused. The signature holds:
//!
//! - **negation**: whether the text negates (`not`, `never`, `without`, `can't`, `unable`,
//!   `fails`…);
//! - **poles**: words on one side of an antonym axis (`enable` against `disable`, `turn on`
//!   against `turn off`, `upload` against `download`, `before` against `after`…), words
//!   negated by a prefix (`unsubscribe`, `disconnect`, `nonprofit`), and every other content
//!   word on its own axis, so the prefixed form of any word opposes the word itself;
//! - **numbers**: digits (`404`, `3.11`, `-5`), number words and ordinals, except 1 ("one
//!   pound" and "a pound" ask the same thing);
//! - **classes**: members of exclusive classes (units, weekdays, months, currencies,
//!   programming languages, operating systems, foods…);
//! - **entities**: capitalised words inside a sentence, acronyms, quoted strings, code
//!   identifiers (`snake_case`, `camelCase`, `os.path`, `/etc/hosts`) and class members;
//! - **directions**: `X to Y` (`Celsius to Fahrenheit`, `string into an integer`).
//!
//! Two signatures conflict when exactly one of them negates; when a word of one sits on the
//! side of an axis opposite to a word of the other (and neither text holds both sides); when
//! their numbers differ; when, within a class or among entities, each names something the
//! other does not (a substitution: Tokyo for Sydney, grams for ounces — naming one more thing
//! is not a conflict); or when one goes from X to Y and the other from Y to X.
//!
//! A negating prefix written apart (`non-toxic`), and `stop`/`quit` before a verb in `-ing`
//! (`stop following`, also `stop Edge from accepting`), turn that word around: it counts as
//! its own opposite.
//!
//! All of it is plain code over the word lists in [`crate::lexicon`]: cheap (tens of
//! microseconds per text, against milliseconds to embed it) and the same on every replica.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use crate::lexicon;

/// Bumped whenever the way signatures are computed changes; together with the word lists
/// it makes the [revision](revision) persisted signatures are checked against.
const GUARD_REVISION: &str = "portcullis-semantic-guard/1";

/// Why two texts are too different for one to take the other's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conflict {
    /// One negates, the other does not.
    Negation,
    /// Words on opposite sides of an antonym axis (`enable` / `disable`).
    Antonym,
    /// Different numbers.
    Number,
    /// Different members of an exclusive class (grams / ounces, Monday / Sunday).
    Class,
    /// Different names, quoted strings or code identifiers.
    Entity,
    /// Opposite directions (`Celsius to Fahrenheit` / `Fahrenheit to Celsius`).
    Direction,
}

impl Conflict {
    /// A short lower-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Negation => "negation",
            Self::Antonym => "antonym",
            Self::Number => "number",
            Self::Class => "class",
            Self::Entity => "entity",
            Self::Direction => "direction",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a text asserts, for the [near-opposite guard](self): negation, antonym poles,
/// numbers, class members and entities, as sorted hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    negated: bool,
    /// Axes the text sits on the first side of only.
    plus: Box<[u64]>,
    /// Axes the text sits on the second side of only.
    minus: Box<[u64]>,
    numbers: Box<[u64]>,
    /// (class, member), sorted.
    classes: Box<[(u64, u64)]>,
    entities: Box<[u64]>,
    /// `X to Y` pairs, and the same pairs reversed.
    forward: Box<[u64]>,
    backward: Box<[u64]>,
}

impl Signature {
    /// The signature of a conversation text (see [`crate::semantic_text`]).
    pub fn of(text: &str) -> Self {
        let lexicon = Lexicon::get();
        let mut builder = Builder::default();
        for line in text.lines() {
            builder.line(lexicon, line);
        }
        builder.finish(lexicon)
    }

    /// Whether the text negates.
    pub fn negated(&self) -> bool {
        self.negated
    }

    /// Why `self` and `other` must not share an answer, if they must not.
    pub fn conflict(&self, other: &Self) -> Option<Conflict> {
        if self.negated != other.negated {
            return Some(Conflict::Negation);
        }
        if intersects(&self.plus, &other.minus) || intersects(&self.minus, &other.plus) {
            return Some(Conflict::Antonym);
        }
        if self.numbers != other.numbers {
            return Some(Conflict::Number);
        }
        if classes_substituted(&self.classes, &other.classes) {
            return Some(Conflict::Class);
        }
        if substituted(&self.entities, &other.entities) {
            return Some(Conflict::Entity);
        }
        if intersects(&self.forward, &other.backward) {
            return Some(Conflict::Direction);
        }
        None
    }

    /// Whether `self` and `other` may share an answer.
    pub fn compatible(&self, other: &Self) -> bool {
        self.conflict(other).is_none()
    }

    /// Appends the binary form: a flag byte, then each list as a little-endian `u32` count
    /// and its `u64` values.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.negated));
        for list in [
            &self.plus,
            &self.minus,
            &self.numbers,
            &self.entities,
            &self.forward,
            &self.backward,
        ] {
            put_len(out, list.len());
            for value in list.iter() {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        put_len(out, self.classes.len());
        for (class, member) in self.classes.iter() {
            out.extend_from_slice(&class.to_le_bytes());
            out.extend_from_slice(&member.to_le_bytes());
        }
    }

    /// Reads what [`Signature::encode_into`] wrote; `None` when the bytes are not that.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader(bytes);
        let negated = match reader.take(1)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        let plus = reader.list()?;
        let minus = reader.list()?;
        let numbers = reader.list()?;
        let entities = reader.list()?;
        let forward = reader.list()?;
        let backward = reader.list()?;
        let count = reader.len()?;
        let mut classes = Vec::with_capacity(count.min(reader.0.len() / 16));
        for _ in 0..count {
            classes.push((reader.u64()?, reader.u64()?));
        }
        if !reader.0.is_empty() {
            return None;
        }
        Some(Self {
            negated,
            plus,
            minus,
            numbers,
            classes: classes.into_boxed_slice(),
            entities,
            forward,
            backward,
        })
    }
}

/// The revision of the guard: a digest of its code revision and every word list. A
/// signature persisted under another revision was computed by other rules and is not
/// compared.
pub fn revision() -> u64 {
    Lexicon::get().revision
}

/// The first bytes of a persisted answer that carries its signature.
const FRAME_MAGIC: [u8; 4] = [0xF5, b'S', b'I', b'G'];

/// A stored answer with its signature in front: the magic bytes, the guard's
/// [`revision`], the signature's length and bytes, then the answer as given.
pub fn frame(signature: &Signature, answer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer.len() + 64);
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&revision().to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    signature.encode_into(&mut out);
    let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start - 4..start].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(answer);
    out
}

/// The signature and the answer of a [framed](frame) row; `None` when the bytes carry no
/// signature, or one of another [`revision`] of the guard.
pub fn unframe(bytes: &[u8]) -> Option<(Signature, &[u8])> {
    let mut reader = Reader(bytes);
    if reader.take(4)? != FRAME_MAGIC || reader.u64()? != revision() {
        return None;
    }
    let len = reader.len()?;
    let signature = Signature::decode(reader.take(len)?)?;
    Some((signature, reader.0))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// A cursor over bytes that never reads past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn len(&mut self) -> Option<usize> {
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    }

    fn list(&mut self) -> Option<Box<[u64]>> {
        let count = self.len()?;
        if self.0.len() / 8 < count {
            return None;
        }
        (0..count).map(|_| self.u64()).collect()
    }
}

/// Whether two sorted lists share a value.
fn intersects(a: &[u64], b: &[u64]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Whether each of two sorted sets holds a value the other does not.
fn substituted(a: &[u64], b: &[u64]) -> bool {
    let only_a = a.iter().any(|v| b.binary_search(v).is_err());
    let only_b = b.iter().any(|v| a.binary_search(v).is_err());
    only_a && only_b
}

/// Whether, in some class both name members of, each names a member the other does not.
fn classes_substituted(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    let members = |list: &[(u64, u64)], class: u64| -> Vec<u64> {
        list.iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, m)| *m)
            .collect()
    };
    let mut previous = None;
    for (class, _) in a {
        if previous == Some(*class) {
            continue;
        }
        previous = Some(*class);
        let theirs = members(b, *class);
        if !theirs.is_empty() && substituted(&members(a, *class), &theirs) {
            return true;
        }
    }
    false
}

/// FNV-1a: a stable 64-bit hash, the same on every replica and across restarts.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for byte in part.as_bytes() {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Strips simple English inflections so that `enable`, `enabled`, `enables` and `enabling`
/// meet: plural and third-person `s`/`es`/`ies`, `ed`/`ied`, `ing` (with a doubled final
/// consonant undone), then a final `e`, and a final `y` written as `i`. Applied alike to the
/// word lists and to the text, so it only has to be consistent, not linguistically right.
pub(crate) fn stem(word: &str) -> String {
    let mut w = word.to_owned();
    if !w.is_ascii() || w.len() < 3 {
        return w;
    }
    if w.len() > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if ["sses", "ches", "shes", "xes", "zes"]
        .iter()
        .any(|s| w.ends_with(s))
    {
        w.truncate(w.len() - 2);
    } else if w.ends_with('s') && !["ss", "us", "is"].iter().any(|s| w.ends_with(s)) {
        w.pop();
    }
    if w.len() > 4 && w.ends_with("ied") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("eed") {
    } else if w.len() > 4 && w.ends_with("ed") && has_vowel(&w[..w.len() - 2]) {
        w.truncate(w.len() - 2);
        undouble(&mut w);
    } else if w.len() > 5 && w.ends_with("ing") && has_vowel(&w[..w.len() - 3]) {
        w.truncate(w.len() - 3);
        undouble(&mut w);
    }
    if w.len() >= 3 && w.ends_with('e') {
        w.pop();
    }
    if w.len() > 2 && w.ends_with('y') {
        w.pop();
        w.push('i');
    }
    w
}

fn has_vowel(s: &str) -> bool {
    s.bytes()
        .enumerate()
        .any(|(i, b)| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u') || (b == b'y' && i > 0))
}

/// `stopp` → `stop`, `logg` → `log`; `add`, `install` and `pass` stay.
fn undouble(w: &mut String) {
    let bytes = w.as_bytes();
    let n = bytes.len();
    if n >= 4
        && bytes[n - 1] == bytes[n - 2]
        && !matches!(
            bytes[n - 1],
            b'a' | b'e' | b'i' | b'o' | b'u' | b'l' | b's' | b'z'
        )
    {
        w.pop();
    }
}

/// The word lists, stemmed and hashed once per process.
struct Lexicon {
    negations: HashSet<&'static str>,
    stopwords: HashSet<&'static str>,
    /// Stem (or `verb_particle` phrase) → (axis, +1 / -1).
    axes: HashMap<String, Vec<(u64, i8)>>,
    /// Stem → (class, member).
    classes: HashMap<String, Vec<(u64, u64)>>,
    /// Stem → value.
    numbers: HashMap<String, &'static str>,
    phrasal: HashSet<String>,
    not_negated: HashSet<&'static str>,
    revision: u64,
}

impl Lexicon {
    fn get() -> &'static Self {
        static LEXICON: OnceLock<Lexicon> = OnceLock::new();
        LEXICON.get_or_init(Self::build)
    }

    fn build() -> Self {
        let mut axes: HashMap<String, Vec<(u64, i8)>> = HashMap::new();
        for (first, second) in lexicon::AXES {
            let Some(name) = first.split_whitespace().next() else {
                continue;
            };
            let axis = hash(&[&stem(name)]);
            for (side, sign) in [(first, 1i8), (second, -1i8)] {
                for word in side.split_whitespace() {
                    let poles = axes.entry(word_key(word)).or_default();
                    if !poles.contains(&(axis, sign)) {
                        poles.push((axis, sign));
                    }
                }
            }
        }
        let mut classes: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for line in lexicon::CLASSES {
            let groups: Vec<Vec<&str>> = line
                .split('|')
                .map(|g| g.split_whitespace().collect())
                .collect();
            let Some(class_name) = groups.first().and_then(|g| g.first()) else {
                continue;
            };
            let class = hash(&["class", class_name]);
            for group in &groups {
                let Some(member_name) = group.first() else {
                    continue;
                };
                let member = hash(&[member_name]);
                for word in group {
                    classes.entry(stem(word)).or_default().push((class, member));
                }
            }
        }
        let mut revision_parts: Vec<&str> = vec![GUARD_REVISION];
        revision_parts.extend(lexicon::NEGATIONS);
        for (a, b) in lexicon::AXES {
            revision_parts.extend([*a, *b]);
        }
        revision_parts.extend(lexicon::PHRASAL_VERBS);
        revision_parts.extend(lexicon::PARTICLES);
        revision_parts.extend(lexicon::GERUND_NEGATORS);
        revision_parts.extend(lexicon::FROM_NEGATORS);
        revision_parts.extend(lexicon::DETERMINERS);
        revision_parts.extend(lexicon::NEGATING_PREFIXES);
        revision_parts.extend(lexicon::NOT_NEGATED_REMAINDERS);
        revision_parts.extend(lexicon::CLASSES);
        for (a, b) in lexicon::NUMBER_WORDS {
            revision_parts.extend([*a, *b]);
        }
        revision_parts.extend(lexicon::STOPWORDS);
        Self {
            negations: lexicon::NEGATIONS.iter().copied().collect(),
            stopwords: lexicon::STOPWORDS.iter().copied().collect(),
            axes,
            classes,
            numbers: lexicon::NUMBER_WORDS
                .iter()
                .map(|(w, v)| (stem(w), *v))
                .collect(),
            phrasal: lexicon::PHRASAL_VERBS.iter().map(|v| stem(v)).collect(),
            not_negated: lexicon::NOT_NEGATED_REMAINDERS.iter().copied().collect(),
            revision: hash(&revision_parts),
        }
    }

    fn is_listed(&self, stem: &str) -> bool {
        self.axes.contains_key(stem)
            || self.classes.contains_key(stem)
            || self.numbers.contains_key(stem)
    }
}

/// The key of a word of the lists: its stem, or `stem(verb)_particle` for a phrase.
fn word_key(word: &str) -> String {
    match word.split_once('_') {
        Some((verb, particle)) => phrase_key(&stem(verb), particle),
        None => stem(word),
    }
}

fn phrase_key(verb_stem: &str, particle: &str) -> String {
    let particle = if particle == "into" { "in" } else { particle };
    format!("{verb_stem}_{particle}")
}

/// A word of the text.
struct Word {
    lower: String,
    stem: String,
    /// The first word of a sentence (its capital says nothing).
    sentence_start: bool,
    /// Starts with a capital letter and has a lower-case letter.
    capitalised: bool,
    /// At least two letters, all capitals (`HTTP`, `2FA`).
    acronym: bool,
    /// Punctuation follows it: a particle after it belongs to another clause.
    clause_end: bool,
    /// Turned around by what comes before it (`non-toxic`).
    flipped: bool,
}

#[derive(Default)]
struct Builder {
    words: Vec<Word>,
    negated: bool,
    numbers: Vec<u64>,
    entities: Vec<u64>,
}

/// Characters stripped from the start of a whitespace-separated chunk.
const LEADING: &[char] = &[
    '"', '\'', '“', '”', '‘', '’', '`', '(', '[', '{', '<', '*', '¿', '¡',
];
/// Characters stripped from the end of a chunk.
const TRAILING: &[char] = &[
    '"', '\'', '“', '”', '‘', '’', '`', ')', ']', '}', '>', '*', '.', ',', ';', ':', '!', '?', '…',
];

impl Builder {
    fn line(&mut self, lexicon: &Lexicon, line: &str) {
        self.quoted(line);
        let mut sentence_start = true;
        for chunk in line.split_whitespace() {
            let inner = chunk.trim_start_matches(LEADING);
            let trimmed = inner.trim_end_matches(TRAILING);
            let tail = &inner[trimmed.len()..];
            let ends_sentence = tail.contains(['.', '?', '!', ':', '…']);
            let ends_clause = ends_sentence || tail.contains([',', ';', ')', ']']);
            if trimmed.is_empty() {
                sentence_start |= ends_sentence;
                if let Some(last) = self.words.last_mut() {
                    last.clause_end |= ends_clause;
                }
                continue;
            }
            self.chunk(lexicon, trimmed, sentence_start);
            if let Some(last) = self.words.last_mut() {
                last.clause_end |= ends_clause;
            }
            sentence_start = ends_sentence;
        }
        if let Some(last) = self.words.last_mut() {
            last.clause_end = true;
        }
    }

    /// Quoted strings are entities: `"…"`, `“…”`, `‘…’`, `` `…` `` and `'…'` (a single
    /// quote opens only at the start of a word and closes only at the end of one, so
    /// apostrophes are not quotes).
    fn quoted(&mut self, line: &str) {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (start, c) = chars[i];
            let close = match c {
                '"' => '"',
                '“' => '”',
                '‘' => '’',
                '`' => '`',
                '\'' if i == 0 || !chars[i - 1].1.is_alphanumeric() => '\'',
                _ => {
                    i += 1;
                    continue;
                }
            };
            let found = chars[i + 1..].iter().position(|&(_, d)| d == close);
            let Some(offset) = found else {
                i += 1;
                continue;
            };
            let end_index = i + 1 + offset;
            if close == '\''
                && chars
                    .get(end_index + 1)
                    .is_some_and(|(_, next)| next.is_alphanumeric())
            {
                // An apostrophe inside a word, not a closing quote.
                i += 1;
                continue;
            }
            let inner = line[start + c.len_utf8()..chars[end_index].0].trim();
            if !inner.is_empty() && inner.chars().count() <= 100 {
                self.entities.push(hash(&["quote", &inner.to_lowercase()]));
            }
            i = end_index + 1;
        }
    }

    fn chunk(&mut self, lexicon: &Lexicon, chunk: &str, sentence_start: bool) {
        let lower = chunk.to_lowercase();
        // Names that punctuation would otherwise take apart.
        let special = match lower.as_str() {
            "c++" => Some("cpp"),
            "c#" => Some("csharp"),
            "f#" => Some("fsharp"),
            ".net" => Some("dotnet"),
            _ => None,
        };
        if let Some(name) = special {
            self.push_word(name.to_owned(), false, false, sentence_start);
            return;
        }
        let bare: String = lower.chars().filter(|c| !matches!(c, '\'' | '’')).collect();
        if lower.ends_with("n't")
            || lower.ends_with("n’t")
            || lexicon.negations.contains(bare.as_str())
        {
            self.negated = true;
        }
        self.numbers_in(chunk);
        if is_code(chunk) {
            if lower.chars().all(char::is_alphanumeric) {
                // `useState`, `macOS`: one word, named like any other (and classed if listed).
                let stem = stem(&lower);
                if !lexicon.is_listed(&stem) {
                    self.entities.push(hash(&[&stem]));
                }
            } else {
                self.entities.push(hash(&["code", &lower]));
            }
        }
        // A possessive says nothing: `California's` is `California`.
        let chunk = chunk
            .strip_suffix("'s")
            .or_else(|| chunk.strip_suffix("’s"))
            .unwrap_or(chunk);
        let mut first = true;
        let mut flip_next = false;
        for part in chunk.split(|c: char| !c.is_alphanumeric()) {
            if part.is_empty() || !part.chars().any(char::is_alphabetic) {
                continue;
            }
            if flip_next {
                flip_next = false;
                self.push_word(part.to_lowercase(), false, false, false);
                if let Some(word) = self.words.last_mut() {
                    word.flipped = true;
                }
                continue;
            }
            if lexicon::NEGATING_PREFIXES
                .iter()
                .any(|p| part.eq_ignore_ascii_case(p))
            {
                // `non-toxic`: the prefix is not a word of its own.
                flip_next = true;
                continue;
            }
            let mut letters = part.chars().filter(|c| c.is_alphabetic());
            let capitalised = part.chars().next().is_some_and(char::is_uppercase)
                && part.chars().any(char::is_lowercase);
            let acronym = letters.clone().count() >= 2 && letters.all(char::is_uppercase);
            self.push_word(
                part.to_lowercase(),
                capitalised,
                acronym,
                sentence_start && first,
            );
            first = false;
        }
    }

    fn push_word(&mut self, lower: String, capitalised: bool, acronym: bool, sentence_start: bool) {
        let stem = stem(&lower);
        self.words.push(Word {
            lower,
            stem,
            sentence_start,
            capitalised,
            acronym,
            clause_end: false,
            flipped: false,
        });
    }

    /// Numbers written with digits: `404`, `3.11`, `1,000` (as `1000`), `10:30`, `-5`.
    fn numbers_in(&mut self, chunk: &str) {
        let chars: Vec<char> = chunk.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let negative = i > 0
                && matches!(chars[i - 1], '-' | '−')
                && (i == 1 || !chars[i - 2].is_alphanumeric());
            let mut number = String::new();
            if negative {
                number.push('-');
            }
            while i < chars.len() {
                let c = chars[i];
                if c.is_ascii_digit() {
                    number.push(c);
                } else if matches!(c, '.' | ',' | ':')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                {
                    if c != ',' {
                        number.push(c);
                    }
                } else {
                    break;
                }
                i += 1;
            }
            self.number(&number);
        }
    }

    fn number(&mut self, number: &str) {
        let (sign, digits) = match number.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", number),
        };
        let trimmed = digits.trim_start_matches('0');
        let digits = if trimmed.is_empty() || trimmed.starts_with(['.', ':']) {
            &digits[digits.len() - trimmed.len() - 1..]
        } else {
            trimmed
        };
        if sign.is_empty() && digits == "1" {
            return;
        }
        self.numbers.push(hash(&["number", sign, digits]));
    }

    fn finish(mut self, lexicon: &Lexicon) -> Signature {
        // Title Case or ALL CAPS text: capitals say nothing about names.
        let long_words = self
            .words
            .iter()
            .filter(|w| !w.sentence_start && w.lower.chars().count() >= 4)
            .count();
        let capitalised = self
            .words
            .iter()
            .filter(|w| !w.sentence_start && w.lower.chars().count() >= 4 && w.capitalised)
            .count();
        let ignore_capitals = long_words >= 3 && capitalised * 2 > long_words;
        let wordy = self
            .words
            .iter()
            .filter(|w| w.lower.chars().count() >= 2)
            .count();
        let acronyms = self.words.iter().filter(|w| w.acronym).count();
        let ignore_acronyms = wordy >= 3 && acronyms * 2 > wordy;

        let mut poles: HashMap<u64, i8> = HashMap::new();
        let mut add_pole = |axis: u64, sign: i8| {
            let pole = poles.entry(axis).or_insert(0);
            // Bit 0: first side seen; bit 1: second side seen.
            *pole |= if sign > 0 { 1 } else { 2 };
        };
        let mut classes = Vec::new();
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        for (i, word) in self.words.iter().enumerate() {
            let previous = i.checked_sub(1).and_then(|p| self.words.get(p));
            // `stop following`, `stop Edge from accepting`: the verb is turned around.
            let flipped = word.flipped || (word.lower.ends_with("ing") && self.gerund_negated(i));
            let sign = |s: i8| if flipped { -s } else { s };
            if let Some(left) = previous
                && matches!(word.lower.as_str(), "to" | "into")
                && !left.clause_end
                && !word.clause_end
                && direction_word(lexicon, left)
            {
                let right = self
                    .words
                    .iter()
                    .skip(i + 1)
                    .take(3)
                    .find(|w| !lexicon::DETERMINERS.contains(&w.lower.as_str()));
                if let Some(right) =
                    right.filter(|r| direction_word(lexicon, r) && r.stem != left.stem)
                {
                    forward.push(hash(&["direction", &left.stem, &right.stem]));
                    backward.push(hash(&["direction", &right.stem, &left.stem]));
                }
            }
            if lexicon.negations.contains(word.lower.as_str()) {
                self.negated = true;
            }
            if let Some(value) = lexicon.numbers.get(&word.stem) {
                self.numbers.push(hash(&["number", "", value]));
            }
            // `turn … off`: a phrasal verb and its particle, within reach and in one clause.
            if lexicon.phrasal.contains(&word.stem) && !word.clause_end {
                for next in self.words.iter().skip(i + 1).take(lexicon::PARTICLE_REACH) {
                    if lexicon::PARTICLES.contains(&next.lower.as_str()) {
                        let key = phrase_key(&word.stem, &next.lower);
                        for &(axis, sign) in lexicon.axes.get(&key).into_iter().flatten() {
                            add_pole(axis, sign);
                        }
                        break;
                    }
                    if next.clause_end {
                        break;
                    }
                }
            }
            let listed = lexicon.axes.get(&word.stem);
            for &(axis, s) in listed.into_iter().flatten() {
                add_pole(axis, sign(s));
            }
            if let Some(members) = lexicon.classes.get(&word.stem) {
                classes.extend(members.iter().copied());
                // A member is a name too: `Zoom` against `Node.js` is a substitution.
                self.entities
                    .extend(members.iter().map(|(_, member)| *member));
            }
            let stopword = lexicon.stopwords.contains(word.lower.as_str());
            let named = (word.capitalised && !word.sentence_start && !ignore_capitals && !stopword)
                || (word.acronym && !ignore_acronyms);
            if named
                && !lexicon.is_listed(&word.stem)
                && !lexicon.negations.contains(word.lower.as_str())
            {
                self.entities.push(hash(&[&word.stem]));
            }
            if stopword || word.lower.chars().count() < 3 {
                continue;
            }
            match negated_remainder(lexicon, &word.lower).filter(|_| listed.is_none()) {
                Some(remainder) => {
                    // `unhealthy` is the opposite of `healthy`, and of what `healthy` is.
                    let remainder = stem(remainder);
                    add_pole(hash(&[&remainder]), sign(-1));
                    for &(axis, s) in lexicon.axes.get(&remainder).into_iter().flatten() {
                        add_pole(axis, sign(-s));
                    }
                }
                None => add_pole(hash(&[&word.stem]), sign(1)),
            }
        }
        let mut plus = Vec::new();
        let mut minus = Vec::new();
        for (axis, pole) in poles {
            match pole {
                1 => plus.push(axis),
                2 => minus.push(axis),
                _ => {}
            }
        }
        Signature {
            negated: self.negated,
            plus: sorted(plus),
            minus: sorted(minus),
            numbers: sorted(self.numbers),
            classes: {
                classes.sort_unstable();
                classes.dedup();
                classes.into_boxed_slice()
            },
            entities: sorted(self.entities),
            forward: sorted(forward),
            backward: sorted(backward),
        }
    }
}

impl Builder {
    /// Whether the verb in `-ing` at `i` follows `stop` (`stop following`), or `from` after
    /// `stop`, `prevent`, `keep` or `block` within the same clause (`stop Edge from
    /// accepting`).
    fn gerund_negated(&self, i: usize) -> bool {
        let Some(previous) = i.checked_sub(1).and_then(|p| self.words.get(p)) else {
            return false;
        };
        if previous.clause_end {
            return false;
        }
        if lexicon::GERUND_NEGATORS.contains(&previous.stem.as_str()) {
            return true;
        }
        if previous.lower != "from" {
            return false;
        }
        let before = &self.words[i.saturating_sub(6)..i - 1];
        before
            .iter()
            .rev()
            .take_while(|w| !w.clause_end)
            .any(|w| lexicon::FROM_NEGATORS.contains(&w.stem.as_str()))
    }
}

/// Whether a word can be an end of `X to Y`: not a word that says little (`how to`, `want
/// to`, `the`).
fn direction_word(lexicon: &Lexicon, word: &Word) -> bool {
    word.lower.chars().count() >= 2
        && !lexicon.stopwords.contains(word.lower.as_str())
        && !lexicon::DETERMINERS.contains(&word.lower.as_str())
}

fn sorted(mut values: Vec<u64>) -> Box<[u64]> {
    values.sort_unstable();
    values.dedup();
    values.into_boxed_slice()
}

/// `unsubscribe` → `subscribe`, `disconnect` → `connect`: the word a negating prefix
/// turns around, unless the word only looks prefixed (`under`, `discount`, `undo`).
fn negated_remainder<'a>(lexicon: &Lexicon, word: &'a str) -> Option<&'a str> {
    if word.len() < 5 {
        return None;
    }
    lexicon::NEGATING_PREFIXES.iter().find_map(|prefix| {
        let remainder = word.strip_prefix(prefix)?;
        let remainder = remainder.strip_prefix('-').unwrap_or(remainder);
        (remainder.len() >= 3
            && remainder.is_ascii()
            && !lexicon.not_negated.contains(remainder)
            && !lexicon.stopwords.contains(remainder))
        .then_some(remainder)
    })
}

/// Whether a chunk is a code identifier, a path, a file name or an address: `snake_case`,
/// `camelCase`, `os.path`, `index.html`, `std::fs`, `/etc/hosts`, `--verbose`, `f()`.
fn is_code(chunk: &str) -> bool {
    let letters = chunk.chars().filter(|c| c.is_alphabetic()).count();
    if letters == 0 || chunk.chars().count() < 3 {
        return false;
    }
    if chunk.contains(['_', '=', '@'])
        || chunk.contains("::")
        || chunk.contains("->")
        || chunk.contains("://")
        || chunk.ends_with("()")
        || chunk.starts_with("--")
        || chunk.starts_with("./")
        || chunk.starts_with("~/")
        || (chunk.starts_with('/') && chunk[1..].starts_with(char::is_alphanumeric))
    {
        return true;
    }
    // A dot between two parts, one of them longer than a letter (`os.path`, not `e.g`).
    let parts: Vec<&str> = chunk.split('.').collect();
    if parts.len() > 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(char::is_alphanumeric))
        && parts
            .iter()
            .any(|p| p.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        && parts.iter().any(|p| p.chars().any(char::is_alphabetic))
    {
        return true;
    }
    // A lower-case letter followed by a capital: `useState`, `getElementById`.
    let chars: Vec<char> = chunk.chars().collect();
    chars
        .windows(2)
        .any(|w| w[0].is_lowercase() && w[1].is_uppercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn conflict(a: &str, b: &str) -> Option<Conflict> {
        let (a, b) = (Signature::of(a), Signature::of(b));
        let there = a.conflict(&b);
        assert_eq!(there, b.conflict(&a), "the guard is symmetric");
        there
    }

    #[test]
    fn stemming_meets_inflections() {
        for group in [
            &["enable", "enabled", "enables", "enabling"][..],
            &["stop", "stops", "stopped", "stopping"],
            &["add", "adds", "added", "adding"],
            &["install", "installs", "installed", "installing"],
            &["log", "logged", "logging", "logs"],
            &["try", "tries", "tried", "trying"],
            &["close", "closes", "closed", "closing"],
            &["switch", "switches", "switched", "switching"],
            &["sunday", "sundays"],
        ] {
            let stems: HashSet<String> = group.iter().map(|w| stem(w)).collect();
            assert_eq!(stems.len(), 1, "{group:?} → {stems:?}");
        }
        assert_ne!(stem("string"), stem("str"));
        assert_eq!(stem("bus"), "bus");
    }

    #[test]
    fn opposites_conflict() {
        use Conflict::*;
        for (a, b, why) in [
            (
                "How do I enable two-factor authentication?",
                "How do I disable two-factor authentication?",
                Antonym,
            ),
            (
                "How do I turn on dark mode?",
                "How do I turn dark mode off?",
                Antonym,
            ),
            ("How do I enable 2FA?", "How can I turn off 2FA?", Antonym),
            (
                "How do I subscribe to the newsletter?",
                "How do I unsubscribe from the newsletter?",
                Antonym,
            ),
            (
                "How do I log in to my account?",
                "How do I log out of my account?",
                Antonym,
            ),
            (
                "Why does my build pass?",
                "Why does my build fail?",
                Negation,
            ),
            (
                "Is it safe to eat raw eggs?",
                "Is it not safe to eat raw eggs?",
                Negation,
            ),
            (
                "How do I upload a file?",
                "How do I download a file?",
                Antonym,
            ),
            (
                "What does HTTP 404 mean?",
                "What does HTTP 500 mean?",
                Number,
            ),
            (
                "How do I install Python 3.11?",
                "How do I install Python 3.12?",
                Number,
            ),
            (
                "What is the capital of France?",
                "What is the capital of Germany?",
                Entity,
            ),
            (
                "How many ounces are in a pound?",
                "How many grams are in a pound?",
                Class,
            ),
            (
                "How do I sort a list in Python?",
                "How do I sort a list in Ruby?",
                Class,
            ),
            (
                "What does `os.path.join` do?",
                "What does `os.path.split` do?",
                Entity,
            ),
            (
                "Is the store open on Sundays?",
                "Is the store open on Mondays?",
                Class,
            ),
            (
                "How do I encrypt a file with gpg?",
                "How do I decrypt a file with gpg?",
                Antonym,
            ),
            (
                "Should I buy Tesla stock?",
                "Should I sell Tesla stock?",
                Antonym,
            ),
            (
                "How do I lock my screen?",
                "How do I unlock my screen?",
                Antonym,
            ),
        ] {
            assert_eq!(conflict(a, b), Some(why), "{a:?} / {b:?}");
        }
    }

    #[test]
    fn paraphrases_do_not_conflict() {
        for (a, b) in [
            (
                "How do I enable two-factor authentication?",
                "How can I turn on 2FA for my account?",
            ),
            (
                "How do I delete my account?",
                "I want to remove my account permanently, how do I do it?",
            ),
            (
                "What is the capital of France?",
                "Which city is the capital of France?",
            ),
            (
                "How many ounces are in a pound?",
                "How many ounces make up one pound?",
            ),
            (
                "How do I take a screenshot on a Mac?",
                "What's the way to capture the screen on macOS?",
            ),
            (
                "Why doesn't my printer work?",
                "Why is my printer not working?",
            ),
            (
                "How do I unclog a drain without chemicals?",
                "How can I clear a blocked drain without using chemical cleaners?",
            ),
            ("What does HTTP 404 mean?", "What is a 404 error in HTTP?"),
            (
                "What is the minimum wage in California?",
                "How much is California's minimum wage?",
            ),
            ("HOW DO I RESET MY PASSWORD?", "How do I reset my password?"),
            (
                "How Do I Reset My Router Password",
                "how do i reset my router password",
            ),
        ] {
            assert_eq!(conflict(a, b), None, "{a:?} / {b:?}");
        }
    }

    #[test]
    fn no_listed_word_cancels_itself() {
        let lexicon = Lexicon::get();
        for (key, poles) in &lexicon.axes {
            for (axis, sign) in poles {
                assert!(
                    !poles.contains(&(*axis, -sign)),
                    "{key} is on both sides of one axis"
                );
            }
        }
    }

    #[test]
    fn signatures_survive_their_binary_form() {
        for text in [
            "",
            "user: How do I turn off \"Focus mode\" on iOS 17 without losing data?\n\
             assistant: Open Settings.",
        ] {
            let signature = Signature::of(text);
            let framed = frame(&signature, b"the answer");
            let (back, answer) = unframe(&framed).unwrap();
            assert_eq!(back, signature);
            assert_eq!(answer, b"the answer");
            for cut in 0..framed.len() - b"the answer".len() {
                assert!(unframe(&framed[..cut]).is_none());
            }
        }
        assert!(unframe(b"an answer written before signatures").is_none());
        let mut other_revision = frame(&Signature::default(), b"x");
        other_revision[4] ^= 1;
        assert!(unframe(&other_revision).is_none());
    }
}
