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
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// A DNS-1035 label made from parts joined by `-`, lower-cased and fitted to 63 characters.
pub fn label_name(parts: &[&str]) -> String {
    fit(&parts.join("-").to_lowercase(), MAX_LABEL)
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
