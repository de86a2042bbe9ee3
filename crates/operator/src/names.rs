//! Kubernetes names and labels of the objects ktwin manages.

use sha2::{Digest, Sha256};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "ktwin-operator";
/// `app.kubernetes.io/managed-by` value on every child.
pub const MANAGED_BY: &str = "ktwin-operator";
/// Label key: managing tool.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label key: the TwinInterface a child belongs to.
pub const LABEL_TWIN_INTERFACE: &str = "ktwin/twin-interface";
/// Label key: the EventStore a child belongs to.
pub const LABEL_EVENT_STORE: &str = "ktwin/event-store";
/// Label key: the dispatcher a pod belongs to (kept from the original for its ServiceMonitor).
pub const LABEL_TRIGGER: &str = "ktwin/trigger";
/// Label key: uid of the owning custom resource; pruning lists children by it.
pub const LABEL_OWNER_UID: &str = "ktwin/owner-uid";
/// Label key on pods that accept connections from outside the world's namespace (gateways);
/// the world's NetworkPolicy admits only the platform's own flows to every other pod.
pub const LABEL_PUBLIC: &str = "ktwin/public";
/// Label key eventing-rabbitmq puts on a trigger's Queue.
pub const LABEL_KNATIVE_TRIGGER: &str = "eventing.knative.dev/trigger";
/// Label key eventing-rabbitmq puts on a broker's Exchange and Queues.
pub const LABEL_KNATIVE_BROKER: &str = "eventing.knative.dev/broker";
/// The finalizer ktwin adds to the resources it reconciles.
pub const FINALIZER: &str = "ktwin.dev/cleanup";

/// Longest DNS-1035 label (object names of Services, label values).
pub const MAX_LABEL: usize = 63;
/// Longest Knative Service name: revisions are named `<ksvc>-00001` and must fit in 63.
pub const MAX_KSERVICE: usize = MAX_LABEL - 6;

/// `name` if it fits in `max` characters, otherwise a prefix of it plus `-<8 hex of its
/// SHA-256>`, so distinct long names stay distinct and the result is stable.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = short_hash(name);
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// The first 8 hex digits of the SHA-256 of `text`.
fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A valid DNS-1035 label (what Kubernetes accepts as a Service or Knative Service name, and
/// as a label value) of at most `max` characters, made from `parts` joined by `-`.
///
/// Names that only need lower-casing keep their readable form (the original operator's names,
/// so a namespace it populated is adopted). Otherwise every character outside `[a-z0-9-]`
/// becomes `-`, and an 8-hex hash of the original text is appended, so `refStreet_light` and
/// `refstreet-light` stay different objects; too long names are hash-truncated by [`fit`].
pub fn dns_label(parts: &[&str], max: usize) -> String {
    let original = parts.join("-");
    let lower = original.to_lowercase();
    let valid = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if valid(&lower) {
        return fit(&lower, max);
    }
    let mut cleaned = String::with_capacity(lower.len());
    for c in lower.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && cleaned.ends_with('-')) {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_matches('-');
    let cleaned = if cleaned.starts_with(|c: char| c.is_ascii_lowercase()) {
        cleaned.to_owned()
    } else {
        format!("k-{cleaned}")
    };
    let hash = short_hash(&original);
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix: String = cleaned.chars().take(keep).collect();
    format!("{}-{hash}", prefix.trim_end_matches('-'))
}

/// A DNS-1035 label made from parts joined by `-`, fitted to 63 characters ([`dns_label`]).
pub fn label_name(parts: &[&str]) -> String {
    dns_label(parts, MAX_LABEL)
}

/// knative.dev/pkg `kmeta.ChildName`, which eventing-rabbitmq names its objects with:
/// `prefix + uid` when that fits in 63 characters, else the first 31 characters of `prefix`
/// followed by the MD5 of `prefix + uid` in hex.
pub fn knative_child_name(prefix: &str, uid: &str) -> String {
    use md5::Digest as _;
    let whole = format!("{prefix}{uid}");
    if whole.len() <= MAX_LABEL {
        return whole;
    }
    let digest = md5::Md5::digest(whole.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let head: String = prefix.chars().take(31).collect();
    format!("{head}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(fit("city-pole", MAX_KSERVICE), "city-pole");
        assert_eq!(
            label_name(&["city-pole", "refStreetlight", "real-dispatcher"]),
            "city-pole-refstreetlight-real-dispatcher"
        );
    }

    #[test]
    fn names_with_invalid_characters_are_sanitised_and_kept_distinct() {
        let a = label_name(&["city-pole", "ref_Street.Light", "real-dispatcher"]);
        let b = label_name(&["city-pole", "ref-street-light", "real-dispatcher"]);
        for name in [&a, &b] {
            assert!(name.len() <= MAX_LABEL);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.ends_with('-') && name.starts_with(|c: char| c.is_ascii_lowercase()));
        }
        assert_ne!(a, b);
        assert!(
            a.starts_with("city-pole-ref-street-light-real-dispatcher-"),
            "{a}"
        );
        assert_eq!(dns_label(&["9lives"], MAX_LABEL).chars().next(), Some('k'));
        let long = dns_label(&[&"x_".repeat(60)], MAX_KSERVICE);
        assert!(long.len() <= MAX_KSERVICE, "{long}");
    }

    #[test]
    fn child_names_follow_knative() {
        assert_eq!(
            knative_child_name("b.ktwin.ktwin.", "uid-1"),
            "b.ktwin.ktwin.uid-1"
        );
        let uid = "6c9e2c1a-4c1b-4c43-9b0a-5b5f5f0e7a11";
        let long = knative_child_name("b.a-rather-long-namespace.a-broker.", uid);
        assert_eq!(long.len(), 31 + 32);
        assert!(long.starts_with("b.a-rather-long-namespace.a-bro"));
    }

    #[test]
    fn long_names_are_hash_truncated_distinctly() {
        let a = "a".repeat(70);
        let b = format!("{}b", "a".repeat(69));
        let fa = fit(&a, MAX_LABEL);
        let fb = fit(&b, MAX_LABEL);
        assert!(fa.len() <= MAX_LABEL && fb.len() <= MAX_LABEL);
        assert_ne!(fa, fb);
        assert_eq!(fa, fit(&a, MAX_LABEL));
        assert!(fit(&a, MAX_KSERVICE).len() <= MAX_KSERVICE);
    }
}
