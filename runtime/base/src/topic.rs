//! MQTT topic names and filters, checked where they enter: [`TopicName`] (where a message
//! is published), [`TopicFilter`] (what a subscription or a grant names, possibly a shared
//! subscription `$share/{group}/{filter}`), and [`resolve`] (a service's relative topics
//! made absolute). Matching follows MQTT 5 exactly, `$` topics included, so the node's
//! routing and its grant checks agree with the broker's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest topic name or filter, in bytes, that a service or a manifest may give. MQTT
/// allows 65,535; this bound keeps error messages, routing tables and matching small (a
/// topic of at most 1024 bytes has at most 513 levels).
pub const MAX_TOPIC_BYTES: usize = 1024;

/// A topic a message is published to: 1 to [`MAX_TOPIC_BYTES`] bytes, no NUL, no `+` or `#`.
/// A topic beginning with `$` is a valid name; whether a service may publish there is the
/// node's decision ([`TopicName::is_system`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

/// A subscription filter: levels split on `/`, `+` for exactly one level, `#` as the last
/// level for that level's parent and everything below. Possibly a shared subscription,
/// `$share/{group}/{filter}`, which the broker delivers to one member of the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicFilter(String);

/// Why a text is not a topic name or a topic filter. Each message quotes the text (cut
/// short, escaped) and states the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Nothing at all; `what` is "topic" or "topic filter".
    #[error("{what} is empty: name at least one level, e.g. `sensors/temperature`")]
    Empty {
        /// "topic" or "topic filter".
        what: &'static str,
    },
    /// Longer than [`MAX_TOPIC_BYTES`].
    #[error(
        "{what} `{text}` is {bytes} bytes, longer than {MAX_TOPIC_BYTES} bytes (MAX_TOPIC_BYTES)"
    )]
    TooLong {
        /// "topic" or "topic filter".
        what: &'static str,
        /// The text, cut short.
        text: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// Holds the character U+0000, which MQTT forbids in topics.
    #[error("{what} `{text}` contains a NUL character, which MQTT forbids")]
    Nul {
        /// "topic" or "topic filter".
        what: &'static str,
        /// The text, escaped.
        text: String,
    },
    /// A topic name with a wildcard in it.
    #[error("topic `{0}`: a topic name may not contain `+` or `#` (those are for filters)")]
    WildcardInName(String),
    /// A `+` that shares its level with other characters, as in `a/b+`.
    #[error("topic filter `{0}`: `+` must be a whole level, as in `a/+/c`")]
    PartialPlus(String),
    /// A `#` that shares its level with other characters, as in `a/b#`.
    #[error("topic filter `{0}`: `#` must be a whole level, as in `a/#`")]
    PartialHash(String),
    /// A `#` with levels after it, as in `a/#/b`.
    #[error("topic filter `{0}`: `#` must be the last level")]
    HashNotLast(String),
    /// `$share` without a group or without a filter.
    #[error(
        "topic filter `{0}`: `$share/` needs a group and a filter: `$share/{{group}}/{{filter}}`"
    )]
    ShareIncomplete(String),
    /// A shared subscription group holding `+` or `#`.
    #[error("topic filter `{0}`: a `$share/` group may not contain `+` or `#`")]
    ShareGroupWildcard(String),
    /// `$share/{group}/$share/…`.
    #[error("topic filter `{0}`: the filter of a shared subscription may not be shared again")]
    NestedShare(String),
}

impl TopicName {
    /// Checks `text`: 1 to [`MAX_TOPIC_BYTES`] bytes, no NUL, no `+` or `#`.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_common("topic", text)?;
        if text.contains(['+', '#']) {
            return Err(TopicError::WildcardInName(shown(text)));
        }
        Ok(Self(text.to_owned()))
    }

    /// The topic text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the topic begins with `$` (`$SYS/…` and the like): the broker's and the
    /// node's own, which `#` and `+/…` filters do not match.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl TopicFilter {
    /// Checks `text`: 1 to [`MAX_TOPIC_BYTES`] bytes, no NUL, `+` and `#` only as whole
    /// levels, `#` only as the last; for `$share/{group}/{filter}` a group without `+` or
    /// `#` and a filter that is itself valid and not shared.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_common("topic filter", text)?;
        let pattern = match split_share(text) {
            Shared::No => text,
            Shared::Incomplete => return Err(TopicError::ShareIncomplete(shown(text))),
            Shared::Yes { group, pattern } => {
                if group.contains(['+', '#']) {
                    return Err(TopicError::ShareGroupWildcard(shown(text)));
                }
                if !matches!(split_share(pattern), Shared::No) {
                    return Err(TopicError::NestedShare(shown(text)));
                }
                pattern
            }
        };
        let mut levels = pattern.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('+') && level != "+" {
                return Err(TopicError::PartialPlus(shown(text)));
            }
            if level.contains('#') {
                if level != "#" {
                    return Err(TopicError::PartialHash(shown(text)));
                }
                if levels.peek().is_some() {
                    return Err(TopicError::HashNotLast(shown(text)));
                }
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The full text as subscribed at the broker, `$share/{group}/` included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The group of a shared subscription `$share/{group}/{filter}`.
    pub fn share_group(&self) -> Option<&str> {
        match split_share(&self.0) {
            Shared::Yes { group, .. } => Some(group),
            Shared::No | Shared::Incomplete => None,
        }
    }

    /// The filter without a `$share/{group}/` prefix: what topics are matched against.
    pub fn pattern(&self) -> &str {
        match split_share(&self.0) {
            Shared::Yes { pattern, .. } => pattern,
            Shared::No | Shared::Incomplete => &self.0,
        }
    }

    /// Whether a message published to `topic` is delivered to this subscription.
    pub fn matches(&self, topic: &TopicName) -> bool {
        pattern_matches(self.pattern(), topic.as_str())
    }

    /// Whether every topic `other` can match is matched by this filter too (compared by
    /// [`pattern`](Self::pattern), the share groups do not count): a granted filter covers a
    /// requested one. `a/#` covers `a`, `a/+/c` and `a/#`; `a/+` covers `a/b` but not
    /// `a/#`; `#` covers `+/x` but not `$SYS/#`.
    pub fn covers(&self, other: &TopicFilter) -> bool {
        pattern_covers(self.pattern(), other.pattern())
    }
}

/// Makes a service's topic absolute. Text beginning with `/` is absolute already and loses
/// that one `/` (`/zigbee2mqtt/+/t` is `zigbee2mqtt/+/t`); other text is relative to `base`
/// (`temp` under `kitchen` is `kitchen/temp`; under an empty base it stays `temp`). A shared
/// subscription `$share/{group}/{filter}` keeps its prefix and resolves its filter
/// (`$share/g/temp` under `b` is `$share/g/b/temp`). Incomplete `$share` text is returned as
/// is, for [`TopicFilter::parse`] to refuse. Never panics; checks nothing else.
pub fn resolve(base: &str, text: &str) -> String {
    match split_share(text) {
        Shared::Yes { group, pattern } => {
            format!("$share/{group}/{}", resolve_plain(base, pattern))
        }
        Shared::Incomplete => text.to_owned(),
        Shared::No => resolve_plain(base, text),
    }
}

fn resolve_plain(base: &str, text: &str) -> String {
    match text.strip_prefix('/') {
        Some(absolute) => absolute.to_owned(),
        None if base.is_empty() => text.to_owned(),
        None => format!("{base}/{text}"),
    }
}

/// How a filter text stands to `$share/`.
enum Shared<'a> {
    No,
    /// `$share`, `$share/…` without a group and a non-empty filter.
    Incomplete,
    Yes {
        group: &'a str,
        pattern: &'a str,
    },
}

fn split_share(text: &str) -> Shared<'_> {
    if text == "$share" {
        return Shared::Incomplete;
    }
    let Some(rest) = text.strip_prefix("$share/") else {
        return Shared::No;
    };
    match rest.split_once('/') {
        Some((group, pattern)) if !group.is_empty() && !pattern.is_empty() => {
            Shared::Yes { group, pattern }
        }
        _ => Shared::Incomplete,
    }
}

fn check_common(what: &'static str, text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty { what });
    }
    if text.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            what,
            text: shown(text),
            bytes: text.len(),
        });
    }
    if text.contains('\0') {
        return Err(TopicError::Nul {
            what,
            text: shown(text),
        });
    }
    Ok(())
}

/// Whether `pattern` (a valid non-shared filter) matches `topic` (a valid name).
fn pattern_matches(pattern: &str, topic: &str) -> bool {
    // A wildcard first level never matches a `$` first level. Wildcards are whole levels,
    // so looking at the first character suffices.
    if topic.starts_with('$') && pattern.starts_with(['+', '#']) {
        return false;
    }
    let mut filter = pattern.split('/');
    let mut topic = topic.split('/');
    loop {
        match (filter.next(), topic.next()) {
            // `#` matches its parent level (no topic level left) and any levels below.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `narrow` matches is matched by `wide` (both valid, non-shared).
fn pattern_covers(wide: &str, narrow: &str) -> bool {
    // `narrow` reaches `$` topics only through a literal `$…` first level, which a wildcard
    // first level in `wide` does not match.
    if narrow.starts_with('$') && wide.starts_with(['+', '#']) {
        return false;
    }
    let mut wide_levels = wide.split('/');
    let mut narrow_levels = narrow.split('/');
    // Whether the levels of `narrow` passed so far join to the empty text: no topic is
    // empty, so a `#` there cannot match its parent (`#` alone, `/#`).
    let mut parent_is_empty = true;
    let mut first = true;
    loop {
        let narrow_level = match (wide_levels.next(), narrow_levels.next()) {
            (Some("#"), _) => return true,
            // From here `narrow` matches any number of further levels, zero included unless
            // the parent is empty: `wide` must too. `#` does; `+/#` does when zero is out.
            (Some("+"), Some("#")) => {
                return parent_is_empty && wide_levels.next() == Some("#");
            }
            // One level, literal or any (but never `$`-first: checked above).
            (Some("+"), Some(n)) => n,
            // The same literal (`w` is neither `+` nor `#` here, so neither is `n`).
            (Some(w), Some(n)) if w == n => n,
            (None, None) => return true,
            _ => return false,
        };
        parent_is_empty = first && narrow_level.is_empty();
        first = false;
    }
}

/// At most 80 characters of `text`, control characters escaped: for messages that quote
/// input.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;
    fn try_from(text: String) -> Result<Self, TopicError> {
        Self::parse(&text)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;
    fn try_from(text: String) -> Result<Self, TopicError> {
        Self::parse(&text)
    }
}

impl From<TopicName> for String {
    fn from(topic: TopicName) -> Self {
        topic.0
    }
}

impl From<TopicFilter> for String {
    fn from(filter: TopicFilter) -> Self {
        filter.0
    }
}

impl FromStr for TopicName {
    type Err = TopicError;
    fn from_str(text: &str) -> Result<Self, TopicError> {
        Self::parse(text)
    }
}

impl FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(text: &str) -> Result<Self, TopicError> {
        Self::parse(text)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests;
