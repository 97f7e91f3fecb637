use super::*;

fn name(s: &str) -> TopicName {
    TopicName::parse(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::parse(s).unwrap()
}

#[test]
fn topic_names_are_checked() {
    for ok in [
        "a",
        "a/b",
        "/",
        "a//b",
        "$SYS/broker",
        "$share/g/x",
        "ü/ß",
        " ",
    ] {
        assert_eq!(name(ok).as_str(), ok);
    }
    assert!(name("$SYS/x").is_system() && !name("a/$x").is_system());
    let long = "a".repeat(MAX_TOPIC_BYTES + 1);
    for (bad, why) in [
        ("", "topic is empty"),
        (
            "a/+",
            "topic `a/+`: a topic name may not contain `+` or `#`",
        ),
        ("#", "may not contain `+` or `#` (those are for filters)"),
        ("a+b", "may not contain"),
        ("a\0b", "topic `a\\0b` contains a NUL character"),
        (
            &long,
            "is 1025 bytes, longer than 1024 bytes (MAX_TOPIC_BYTES)",
        ),
    ] {
        let e = TopicName::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert!(TopicName::parse(&"a".repeat(MAX_TOPIC_BYTES)).is_ok());
    let e = TopicName::parse(&long).unwrap_err().to_string();
    assert!(e.len() < 200, "the text is cut short: {e}");
}

#[test]
fn topic_filters_are_checked() {
    for (ok, group, pattern) in [
        ("a", None, "a"),
        ("#", None, "#"),
        ("+", None, "+"),
        ("a/+/c/#", None, "a/+/c/#"),
        ("+/+", None, "+/+"),
        ("/", None, "/"),
        ("a//+/", None, "a//+/"),
        ("$SYS/#", None, "$SYS/#"),
        ("$shared/x", None, "$shared/x"),
        ("$share/g/a/+", Some("g"), "a/+"),
        ("$share/g/#", Some("g"), "#"),
        ("$share/g//", Some("g"), "/"),
        ("$share/g/$SYS/#", Some("g"), "$SYS/#"),
    ] {
        let f = filter(ok);
        assert_eq!(
            (f.as_str(), f.share_group(), f.pattern()),
            (ok, group, pattern)
        );
    }
    for (bad, why) in [
        ("", "topic filter is empty"),
        ("a/#/b", "topic filter `a/#/b`: `#` must be the last level"),
        ("#/", "`#` must be the last level"),
        ("a/b#", "`#` must be a whole level"),
        ("a/#b", "`#` must be a whole level"),
        ("a+/b", "`+` must be a whole level"),
        ("a/++", "`+` must be a whole level"),
        ("a\0", "contains a NUL character"),
        (
            "$share",
            "`$share/` needs a group and a filter: `$share/{group}/{filter}`",
        ),
        ("$share/", "needs a group and a filter"),
        ("$share/g", "needs a group and a filter"),
        ("$share/g/", "needs a group and a filter"),
        ("$share//a", "needs a group and a filter"),
        (
            "$share/g+/a",
            "a `$share/` group may not contain `+` or `#`",
        ),
        ("$share/#/a", "group may not contain"),
        (
            "$share/g/a/#/b",
            "`$share/g/a/#/b`: `#` must be the last level",
        ),
        ("$share/g/$share/h/a", "may not be shared again"),
        ("$share/g/$share", "may not be shared again"),
    ] {
        let e = TopicFilter::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    let long = format!("$share/g/{}", "a".repeat(MAX_TOPIC_BYTES));
    let e = TopicFilter::parse(&long).unwrap_err();
    assert!(matches!(e, TopicError::TooLong { bytes: 1033, .. }), "{e}");
}

#[test]
fn matching_follows_mqtt_5() {
    for (f, t, expected) in [
        ("a/b", "a/b", true),
        ("a/b", "a/c", false),
        ("a/b", "a/b/c", false),
        ("a/b", "a", false),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("+/+", "/", true),
        ("+", "/", false),
        ("/+", "/x", true),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/", "a/b/", true),
        ("a/+/", "a/b", false),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b/c", true),
        ("a/#", "ab", false),
        ("a/#", "b/a", false),
        ("a/+/#", "a", false),
        ("a/+/#", "a/b", true),
        ("#", "a", true),
        ("#", "/", true),
        ("#", "a/b/c", true),
        ("#", "$SYS", false),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("+/#", "$SYS/x", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/+", "$SYS/x", true),
        ("a/+", "a/$x", true),
        ("a/#", "a/$x/y", true),
        ("+", "x$", true),
        ("$share/g/a/+", "a/b", true),
        ("$share/g/#", "$SYS/x", false),
    ] {
        assert_eq!(filter(f).matches(&name(t)), expected, "{f} on {t}");
    }
}

#[test]
fn covering_is_exact() {
    for (wide, narrow, expected) in [
        ("a/#", "a/+/c", true),
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("a/#", "b", false),
        ("a/#", "#", false),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/#", false),
        ("a/+", "a/b/c", false),
        ("a/+", "a", false),
        ("a/b", "a/+", false),
        ("a", "a/#", false),
        ("#", "+/x", true),
        ("#", "#", true),
        ("#", "a/$x/#", true),
        ("#", "$SYS/#", false),
        ("+/#", "$SYS/#", false),
        ("+/#", "#", true),
        ("+/#", "+", true),
        ("+/+/#", "#", false),
        ("+/#", "a/#", true),
        ("/+/#", "/#", true),
        ("/+/#", "/+/#", true),
        ("//+/#", "//#", false),
        ("+/+/#", "+/#", false),
        ("a/+/#", "a/#", false),
        ("a/+/#", "a/+/#", true),
        ("+", "#", false),
        ("+", "$x", false),
        ("$SYS/#", "$SYS/+", true),
        ("$SYS/+", "$SYS/#", false),
        ("a//b", "a/+/b", false),
        ("a/+/b", "a//b", true),
        ("$share/g/a/#", "$share/h/a/b", true),
    ] {
        assert_eq!(
            filter(wide).covers(&filter(narrow)),
            expected,
            "{wide} covers {narrow}"
        );
    }
}

/// Every filter of up to 4 levels over a small alphabet against every other, compared with
/// the topics of up to 5 levels each matches: `covers` is exactly "matches a superset".
#[test]
fn covering_agrees_with_matching_exhaustively() {
    fn all(alphabet: &[&str], max_levels: usize) -> Vec<String> {
        let mut out: Vec<String> = alphabet.iter().map(|l| (*l).to_owned()).collect();
        let mut last = out.clone();
        for _ in 1..max_levels {
            last = last
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |l| format!("{prefix}/{l}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }
    let filters: Vec<TopicFilter> = all(&["a", "", "$x", "+", "#"], 4)
        .iter()
        .filter_map(|s| TopicFilter::parse(s).ok())
        .collect();
    let topics: Vec<TopicName> = all(&["a", "", "$x", "z"], 5)
        .iter()
        .filter_map(|s| TopicName::parse(s).ok())
        .collect();
    // All but the empty text, and `#` only last.
    assert_eq!(
        (filters.len(), topics.len()),
        (5 + 20 + 80 + 320 - 1, 4 + 16 + 64 + 256 + 1024 - 1)
    );
    // Which topics each filter matches, one bit each.
    let matched: Vec<Vec<u64>> = filters
        .iter()
        .map(|f| {
            let mut bits = vec![0u64; topics.len().div_ceil(64)];
            for (i, t) in topics.iter().enumerate() {
                if f.matches(t) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            bits
        })
        .collect();
    for (wide, wide_bits) in filters.iter().zip(&matched) {
        for (narrow, narrow_bits) in filters.iter().zip(&matched) {
            let superset = wide_bits.iter().zip(narrow_bits).all(|(w, n)| n & !w == 0);
            assert_eq!(wide.covers(narrow), superset, "{wide} covers {narrow}");
        }
    }
}

#[test]
fn relative_topics_resolve_under_the_base() {
    for (base, text, resolved) in [
        ("kitchen", "temp", "kitchen/temp"),
        ("kitchen", "+/t", "kitchen/+/t"),
        ("kitchen", "/zigbee2mqtt/+/t", "zigbee2mqtt/+/t"),
        ("kitchen", "//x", "/x"),
        ("kitchen", "/", ""),
        ("", "temp", "temp"),
        ("", "/temp", "temp"),
        ("a/b", "#", "a/b/#"),
        ("b", "$share/g/temp", "$share/g/b/temp"),
        ("b", "$share/g//abs", "$share/g/abs"),
        ("", "$share/g/temp", "$share/g/temp"),
        ("b", "$share/g", "$share/g"),
        ("b", "$share", "$share"),
        ("b", "$share//x", "$share//x"),
        ("b", "$SYS/x", "b/$SYS/x"),
        ("b", "/$SYS/x", "$SYS/x"),
        ("ü", "ß", "ü/ß"),
        ("b", "", "b/"),
    ] {
        assert_eq!(resolve(base, text), resolved, "{text} under {base}");
    }
}

#[test]
fn serde_goes_through_parse() {
    let f: TopicFilter = serde_json::from_str("\"$share/g/a/+\"").unwrap();
    assert_eq!(f.share_group(), Some("g"));
    assert_eq!(serde_json::to_string(&f).unwrap(), "\"$share/g/a/+\"");
    let t: TopicName = serde_json::from_str("\"$SYS/x\"").unwrap();
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"$SYS/x\"");
    assert_eq!(t.to_string(), "$SYS/x");
    assert_eq!(f.to_string(), "$share/g/a/+");
    let e = serde_json::from_str::<TopicName>("\"a/#\"").unwrap_err();
    assert!(e.to_string().contains("may not contain `+` or `#`"), "{e}");
    let e = serde_json::from_str::<TopicFilter>("\"a/#/b\"").unwrap_err();
    assert!(e.to_string().contains("must be the last level"), "{e}");
    let e = serde_json::from_str::<TopicFilter>("\"\"").unwrap_err();
    assert!(e.to_string().contains("topic filter is empty"), "{e}");
    assert_eq!("a/+".parse::<TopicFilter>().unwrap(), filter("a/+"));
}
