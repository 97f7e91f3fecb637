//! Dispatch by a topic trie: which subscriptions a published topic reaches, found by walking
//! the topic's levels, so the cost of a message does not grow with the number of filters.

use std::collections::{BTreeSet, HashMap};

use busbar_base::topic;

/// Filter patterns (as [`TopicFilter::pattern`](topic::TopicFilter::pattern) gives them:
/// valid, without `$share/{group}/`) each mapped to a set of values, e.g. the subscribers of
/// that filter. Matching follows MQTT 5: `+` is one level, `#` its parent level and everything
/// below, and neither as the first level matches a `$` topic.
///
/// Patterns and topics are at most [`MAX_TOPIC_BYTES`](topic::MAX_TOPIC_BYTES) long, so at
/// most 513 levels: that bounds the trie's depth and so the recursion below.
#[derive(Debug)]
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

/// The patterns that share the levels leading here.
#[derive(Debug)]
struct Node<V> {
    /// The next level, literal.
    children: HashMap<Box<str>, Node<V>>,
    /// The next level, `+`.
    plus: Option<Box<Node<V>>>,
    /// Values of the pattern that is these levels then `#`.
    hash: BTreeSet<V>,
    /// Values of the pattern that ends here.
    values: BTreeSet<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: BTreeSet::new(),
            values: BTreeSet::new(),
        }
    }
}

impl<V: Ord> Default for Trie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Ord> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Adds `value` under `pattern`; true when it was not there yet.
    pub fn insert(&mut self, pattern: &str, value: V) -> bool {
        debug_assert!(
            pattern.len() <= topic::MAX_TOPIC_BYTES,
            "a pattern longer than MAX_TOPIC_BYTES would deepen the trie past its bound"
        );
        let mut node = &mut self.root;
        let mut rest = pattern;
        let set = loop {
            let (level, tail) = split_level(rest);
            if level == "#" && tail.is_none() {
                break &mut node.hash;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
            match tail {
                Some(tail) => rest = tail,
                None => break &mut node.values,
            }
        };
        let added = set.insert(value);
        self.len += usize::from(added);
        added
    }

    /// Removes `value` from under `pattern`; true when it was there. Nodes left without
    /// values or children go, so the trie does not grow with subscription churn.
    pub fn remove(&mut self, pattern: &str, value: &V) -> bool {
        let removed = self.root.remove(pattern, value);
        self.len -= usize::from(removed);
        removed
    }

    /// Calls `f` with every value of every pattern that matches `topic` (a valid topic
    /// name); a value under several matching patterns comes once for each. The work is
    /// proportional to the topic's levels times the wildcard branches along the way, not
    /// to the number of patterns.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        // `+` and `#` as the first level do not match a `$` topic.
        self.root.visit(topic, !topic.starts_with('$'), &mut f);
    }

    /// The number of (pattern, value) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<V: Ord> Node<V> {
    /// Reports the patterns below this node that match `rest`, one or more topic levels.
    /// Recursion: one level deeper per topic level matched, so no deeper than the trie
    /// (≤ 513 levels).
    fn visit(&self, rest: &str, wildcards: bool, f: &mut impl FnMut(&V)) {
        let (level, tail) = split_level(rest);
        if wildcards {
            self.hash.iter().for_each(&mut *f);
            if let Some(plus) = &self.plus {
                plus.arrive(tail, f);
            }
        }
        if let Some(child) = self.children.get(level) {
            child.arrive(tail, f);
        }
    }

    /// This node matched one topic level; `tail` is what is left of the topic.
    fn arrive(&self, tail: Option<&str>, f: &mut impl FnMut(&V)) {
        match tail {
            Some(rest) => self.visit(rest, true, f),
            None => {
                self.values.iter().for_each(&mut *f);
                // `a/#` matches `a`.
                self.hash.iter().for_each(&mut *f);
            }
        }
    }

    /// Removes `value` from under `rest` (one or more pattern levels), pruning nodes left
    /// empty. Recursion follows existing nodes, so at most the trie's depth.
    fn remove(&mut self, rest: &str, value: &V) -> bool {
        let (level, tail) = split_level(rest);
        if level == "#" && tail.is_none() {
            return self.hash.remove(value);
        }
        if level == "+" {
            let Some(plus) = self.plus.as_deref_mut() else {
                return false;
            };
            let removed = plus.remove_below(tail, value);
            if plus.is_empty() {
                self.plus = None;
            }
            return removed;
        }
        let Some(child) = self.children.get_mut(level) else {
            return false;
        };
        let removed = child.remove_below(tail, value);
        if child.is_empty() {
            self.children.remove(level);
            // Give back what churn left unused; amortised, as three quarters of the entries
            // must go between two shrinks.
            if self.children.len() * 4 < self.children.capacity() {
                self.children.shrink_to_fit();
            }
        }
        removed
    }

    fn remove_below(&mut self, tail: Option<&str>, value: &V) -> bool {
        match tail {
            Some(rest) => self.remove(rest, value),
            None => self.values.remove(value),
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.values.is_empty()
    }
}

/// The first level of `text` and the rest after its `/`, if any.
fn split_level(text: &str) -> (&str, Option<&str>) {
    match text.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use topic::{TopicFilter, TopicName};

    fn matches(trie: &Trie<usize>, topic: &str) -> Vec<usize> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |v| out.push(*v));
        out.sort_unstable();
        out
    }

    fn nodes<V>(node: &Node<V>) -> usize {
        1 + node.children.values().map(nodes).sum::<usize>() + node.plus.as_deref().map_or(0, nodes)
    }

    #[test]
    fn insert_remove_and_prune() {
        let mut trie = Trie::new();
        assert!(trie.is_empty());
        assert!(trie.insert("a/b", 1));
        assert!(!trie.insert("a/b", 1));
        assert!(trie.insert("a/b", 2));
        assert!(trie.insert("a/+/c", 3));
        assert!(trie.insert("a/#", 4));
        assert!(trie.insert("#", 5));
        assert!(trie.insert("a/b/c/d", 6));
        assert_eq!(trie.len(), 6);
        assert_eq!(matches(&trie, "a/b"), [1, 2, 4, 5]);
        assert_eq!(matches(&trie, "a/b/c"), [3, 4, 5]);

        assert!(!trie.remove("a/b", &3), "not under that pattern");
        assert!(!trie.remove("a/x", &1), "no such pattern");
        assert!(!trie.remove("a/+", &3), "a prefix of a pattern");
        assert!(trie.remove("a/b/c/d", &6));
        assert!(!trie.remove("a/b/c/d", &6));
        // root, a, a/b, a/+, a/+/c: the a/b/c/d branch is gone.
        assert_eq!(nodes(&trie.root), 5);
        assert!(trie.remove("a/b", &1) && trie.remove("a/+/c", &3));
        assert_eq!(nodes(&trie.root), 3);
        assert_eq!(matches(&trie, "a/b"), [2, 4, 5]);
        for (pattern, value) in [("a/b", 2), ("a/#", 4), ("#", 5)] {
            assert!(trie.remove(pattern, &value), "{pattern}");
        }
        assert!(trie.is_empty() && trie.root.is_empty());
        assert_eq!(nodes(&trie.root), 1);
        assert_eq!(matches(&trie, "a/b"), [] as [usize; 0]);
    }

    #[test]
    fn matching_follows_mqtt_5() {
        for (pattern, topic, expected) in [
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b", "a", false),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("+/+", "/", true),
            ("+", "/", false),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("a//b", "a/b", false),
            ("a/+/", "a/b/", true),
            ("a/+/", "a/b", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/+/#", "a", false),
            ("#", "/", true),
            ("#", "$SYS", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("+/#", "$SYS/x", false),
            ("$SYS/#", "$SYS", true),
            ("$SYS/+", "$SYS/x", true),
            ("a/+", "a/$x", true),
            ("a/#", "a/$x/y", true),
        ] {
            let mut trie = Trie::new();
            trie.insert(pattern, 0);
            assert_eq!(
                !matches(&trie, topic).is_empty(),
                expected,
                "{pattern} on {topic}"
            );
        }
    }

    /// xorshift64*: deterministic, good enough to pick levels.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }

        fn levels(&mut self, alphabet: &[&str], max: usize) -> Vec<String> {
            let n = 1 + self.below(max);
            (0..n)
                .map(|_| alphabet[self.below(alphabet.len())].to_owned())
                .collect()
        }
    }

    #[test]
    fn matches_agree_with_the_filter_rules() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut trie = Trie::new();
        let mut filters = Vec::new();
        while filters.len() < 10_000 {
            let mut levels = rng.levels(&["a", "b", "c", "", "$x", "+"], 4);
            if rng.below(3) == 0 {
                levels.push("#".to_owned());
            }
            let Ok(filter) = TopicFilter::parse(&levels.join("/")) else {
                continue; // the empty text
            };
            assert!(trie.insert(filter.pattern(), filters.len()));
            filters.push(filter);
        }
        assert_eq!(trie.len(), 10_000);
        // The brute force checks each distinct filter once.
        let mut values: BTreeMap<&TopicFilter, Vec<usize>> = BTreeMap::new();
        for (value, filter) in filters.iter().enumerate() {
            values.entry(filter).or_default().push(value);
        }
        let mut matched = 0;
        for _ in 0..2_000 {
            let topic = rng.levels(&["a", "b", "c", "", "$x", "d"], 6).join("/");
            let Ok(name) = TopicName::parse(&topic) else {
                continue; // the empty text
            };
            let mut expected: Vec<usize> = values
                .iter()
                .filter(|(filter, _)| filter.matches(&name))
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            expected.sort_unstable();
            assert_eq!(matches(&trie, &topic), expected, "{topic}");
            matched += expected.len();
        }
        assert!(
            values.len() > 1_000 && matched > 10_000,
            "a spread of patterns, and topics that hit them: {} and {matched}",
            values.len()
        );

        // Churn: take half away, still agreeing, and the rest prunes to nothing.
        for (value, filter) in filters.iter().enumerate().step_by(2) {
            assert!(trie.remove(filter.pattern(), &value));
        }
        for topic in ["a", "a/b", "$x/a", "/", "a//c", "$x", "b/c/a/"] {
            let name = TopicName::parse(topic).unwrap();
            let expected: Vec<usize> = (1..filters.len())
                .step_by(2)
                .filter(|&i| filters[i].matches(&name))
                .collect();
            assert_eq!(matches(&trie, topic), expected, "{topic}");
        }
        for (value, filter) in filters.iter().enumerate().skip(1).step_by(2) {
            assert!(trie.remove(filter.pattern(), &value));
        }
        assert!(trie.is_empty() && trie.root.is_empty());
    }

    #[test]
    fn many_exact_patterns_beside_one_wildcard() {
        let mut trie = Trie::new();
        for i in 0..10_000 {
            trie.insert(&format!("sensors/{i}/temperature"), i);
        }
        trie.insert("sensors/+/temperature", usize::MAX);
        assert_eq!(trie.len(), 10_001);
        assert_eq!(
            matches(&trie, "sensors/4242/temperature"),
            [4242, usize::MAX]
        );
        assert_eq!(matches(&trie, "sensors/kitchen/temperature"), [usize::MAX]);
        assert_eq!(matches(&trie, "sensors/4242/humidity"), [] as [usize; 0]);
        assert_eq!(matches(&trie, "sensors/4242"), [] as [usize; 0]);
    }
}
