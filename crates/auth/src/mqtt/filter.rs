//! MQTT topic filters: whether a topic matches a filter, and whether a requested filter stays
//! within an allowed one (so a subscription can be checked before anything matches it).

/// Whether `filter` is a well-formed MQTT filter: `#` only as the whole last level, `+` only as
/// a whole level, no NUL, not empty.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    // Checked on every device publish against every granted filter: no allocation.
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let wildcard_free = !level.contains(['+', '#']);
        let last = levels.peek().is_none();
        if !(wildcard_free || level == "+" || (level == "#" && last)) {
            return false;
        }
    }
    true
}

/// Whether every topic `requested` can match is also matched by `allowed`. For a topic (no
/// wildcards) this is plain matching. Topics starting with `$` are never matched by a
/// wildcard in the first level, as MQTT requires. A malformed filter is within nothing and
/// grants nothing.
pub fn is_within(requested: &str, allowed: &str) -> bool {
    is_valid_filter(requested) && valid_is_within(requested, allowed)
}

/// Whether any of `allowed` grants `requested` ([`is_within`]), validating `requested` once
/// rather than once per granted filter: the gate asks this on every device publish.
pub(crate) fn is_within_any<'a>(
    requested: &str,
    allowed: impl IntoIterator<Item = &'a String>,
) -> bool {
    is_valid_filter(requested)
        && allowed
            .into_iter()
            .any(|allowed| valid_is_within(requested, allowed))
}

/// [`is_within`] for a `requested` already known to be valid. `allowed` needs no validation
/// of its own: a malformed level of it (`a+`, `b#`, one with NUL) can never equal a level of a
/// valid `requested`, an empty one is never reached, and `#` is checked to be last where it is
/// met.
fn valid_is_within(requested: &str, allowed: &str) -> bool {
    // The levels before `allowed`'s first wildcard are literal: `requested` starts with them,
    // or is their parent under a `#`. Most granted filters differ within them, so this one
    // comparison settles most of a device's grants without splitting either into levels.
    let literal = &allowed[..allowed.find(['+', '#']).unwrap_or(allowed.len())];
    if !requested.starts_with(literal) && literal.strip_suffix('/') != Some(requested) {
        return false;
    }
    levels_within(requested, allowed)
}

/// [`valid_is_within`], level by level.
fn levels_within(requested: &str, allowed: &str) -> bool {
    if requested.starts_with('$') && allowed.starts_with(['+', '#']) {
        return false;
    }
    let mut wanted = requested.split('/');
    let mut granted = allowed.split('/');
    loop {
        match (wanted.next(), granted.next()) {
            (_, Some("#")) => return granted.next().is_none(),
            (None, None) => return true,
            // (`a/#` also matches `a` itself: the first arm.)
            (None, Some(_)) | (Some(_), None) | (Some("#"), Some(_)) => return false,
            (Some(_), Some("+")) => {}
            (Some(level), Some(literal)) => {
                if level != literal {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_filters() {
        assert!(is_within("ktwin/real/pole/p1", "ktwin/real/pole/p1"));
        assert!(is_within("ktwin/real/pole/p1", "ktwin/real/pole/+"));
        assert!(is_within("ktwin/real/pole/p1", "ktwin/real/#"));
        assert!(is_within("ktwin/real/pole/p1", "#"));
        assert!(!is_within("ktwin/real/pole/p1", "ktwin/real/pole/p2"));
        assert!(!is_within("ktwin/real/pole/p1/x", "ktwin/real/pole/+"));
        assert!(!is_within("ktwin/real/pole", "ktwin/real/pole/+"));
        assert!(!is_within("$SYS/broker", "#"));
        assert!(is_within("$SYS/broker", "$SYS/#"));
        assert!(is_within("ktwin/real", "ktwin/real/#"));
        assert!(!is_within("ktwin/real", "ktwin/real/+"));
        assert!(!is_within("ktwin/realm/x", "ktwin/real/#"));
        assert!(!is_within("ktwin/rea", "ktwin/real/#"));
    }

    /// Filters of a few short levels, wildcards and malformed levels included, so that
    /// random pairs often share levels.
    fn filter() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let level = prop_oneof![
            Just("a"),
            Just("ab"),
            Just("b"),
            Just("+"),
            Just("#"),
            Just("$s"),
            Just(""),
            Just("a+"),
        ];
        proptest::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    proptest::proptest! {
        #[test]
        fn the_literal_prefix_check_agrees_with_matching_level_by_level(
            requested in filter(),
            allowed in filter(),
        ) {
            proptest::prop_assume!(is_valid_filter(&requested));
            proptest::prop_assert_eq!(
                valid_is_within(&requested, &allowed),
                levels_within(&requested, &allowed)
            );
        }
    }

    #[test]
    fn requested_filters_must_stay_within_the_allowed_one() {
        assert!(is_within("ktwin/virtual/pole/+", "ktwin/virtual/pole/+"));
        assert!(is_within("ktwin/virtual/pole/+", "ktwin/virtual/pole/#"));
        assert!(is_within("ktwin/virtual/pole/#", "ktwin/virtual/pole/#"));
        assert!(!is_within("ktwin/virtual/pole/#", "ktwin/virtual/pole/+"));
        assert!(!is_within("ktwin/virtual/+/p1", "ktwin/virtual/pole/p1"));
        assert!(!is_within("ktwin/virtual/pole/+", "ktwin/virtual/pole/p1"));
        assert!(!is_within("#", "ktwin/#"));
        assert!(!is_within("+/virtual/pole/p1", "ktwin/virtual/pole/p1"));
    }

    #[test]
    fn malformed_filters_are_never_within() {
        for bad in ["", "a/#/b", "a+", "a/b#", "a\0b"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
            assert!(!is_within(bad, "#"), "{bad:?}");
        }
    }

    #[test]
    fn malformed_granted_filters_grant_nothing() {
        for (topic, bad) in [
            ("a/x/b", "a/#/b"),
            ("a/x", "a/#/b"),
            ("a/b", "a+/b"),
            ("a/b", "a/b#"),
            ("a", "a\0"),
            ("a", ""),
            ("a/b", "a/b/#/#"),
        ] {
            assert!(!is_valid_filter(bad), "{bad:?}");
            assert!(!is_within(topic, bad), "{topic:?} within {bad:?}");
            assert!(
                !is_within_any(topic, &[bad.to_owned()]),
                "{topic:?} within {bad:?}"
            );
        }
        let granted = ["ktwin/real/pole/+".to_owned(), "a/#/b".to_owned()];
        assert!(is_within_any("ktwin/real/pole/p1", &granted));
        assert!(!is_within_any("ktwin/real/pole/p1/x", &granted));
        assert!(!is_within_any("ktwin/real/+/p1", &granted[..1]));
    }
}
