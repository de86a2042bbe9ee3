//! The admission rules of the fake API server: the ones a real cluster with Knative,
//! eventing-rabbitmq and the RabbitMQ messaging topology operator applies to what ktwin writes,
//! with the status codes they answer (`../shared/reference/cluster-admission.md` §1–3; each
//! rule cites the upstream file it comes from).

use serde_json::Value;

/// A refusal: HTTP status and message.
pub type Refusal = (u16, String);

/// Which object is written and how.
pub struct Write<'a> {
    /// Resource plural with its group, e.g. `bindings.rabbitmq.com`, `services` (core).
    pub resource: &'a str,
    /// The object as it would be stored.
    pub new: &'a Value,
    /// The stored object, on update.
    pub old: Option<&'a Value>,
}

const KSERVICE: &str = "services.serving.knative.dev";
const TRIGGER: &str = "triggers.eventing.knative.dev";
const BINDING: &str = "bindings.rabbitmq.com";
const QUEUE: &str = "queues.rabbitmq.com";
const EXCHANGE: &str = "exchanges.rabbitmq.com";
const DEPLOYMENT: &str = "deployments.apps";
const STATEFULSET: &str = "statefulsets.apps";

/// Checks `write`; `Err` carries the code and message the real API server would answer.
pub fn admit(write: &Write) -> Result<(), Refusal> {
    metadata(write.new)?;
    match write.resource {
        KSERVICE => knative_service(write),
        TRIGGER => trigger(write),
        BINDING | QUEUE | EXCHANGE => topology(write),
        DEPLOYMENT | STATEFULSET => apps(write),
        _ => Ok(()),
    }
}

/// Mutations admission applies before validation (mutating webhooks, CRD defaults).
pub fn default(resource: &str, new: &mut Value, creating: bool) {
    // mqueue.kb.io: an omitted `durable` becomes true on CREATE only
    // (internal/webhook/v1beta1/queue_defaulter_webhook.go).
    if resource == QUEUE && creating && new["spec"]["durable"].is_null() {
        new["spec"]["durable"] = Value::Bool(true);
    }
    // CRD defaults: `vhost: /` when omitted (config/crd/bases/rabbitmq.com_*.yaml).
    if matches!(resource, BINDING | QUEUE | EXCHANGE) && new["spec"]["vhost"].is_null() {
        new["spec"]["vhost"] = Value::String("/".into());
    }
    // Trigger defaulting labels it with its broker (eventing pkg/apis/eventing/v1/
    // trigger_defaults.go).
    if resource == TRIGGER
        && let Some(broker) = new["spec"]["broker"].as_str().map(str::to_owned)
    {
        new["metadata"]["labels"]["eventing.knative.dev/broker"] = Value::String(broker);
    }
}

fn invalid(message: String) -> Refusal {
    (422, message)
}

fn knative(webhook: &str, message: String) -> Refusal {
    (
        400,
        format!("admission webhook \"{webhook}\" denied the request: validation failed: {message}"),
    )
}

fn topology(write: &Write) -> Result<(), Refusal> {
    let spec = &write.new["spec"];
    let kind = write.resource.split('.').next().unwrap_or_default();
    // Schema: required fields and enums are 422 (config/crd/bases/*.yaml).
    if spec["rabbitmqClusterReference"].is_null() {
        return Err(invalid(format!(
            "spec.rabbitmqClusterReference: Required value ({kind})"
        )));
    }
    if matches!(write.resource, QUEUE | EXCHANGE) && !spec["name"].is_string() {
        return Err(invalid(format!("spec.name: Required value ({kind})")));
    }
    if write.resource == BINDING
        && !matches!(
            spec["destinationType"].as_str(),
            None | Some("queue" | "exchange")
        )
    {
        return Err(invalid(format!(
            "spec.destinationType: Unsupported value: {}",
            spec["destinationType"]
        )));
    }
    let forbidden = |message: String| (403, message);
    let reference = &spec["rabbitmqClusterReference"];
    // api/v1beta1/rabbitmq_cluster_reference.go: exactly one of name / connectionSecret.
    if write.old.is_none()
        && reference["name"].is_string() == reference["connectionSecret"].is_object()
    {
        return Err(forbidden(
            "invalid RabbitmqClusterReference: exactly one of name and connectionSecret must be set"
                .into(),
        ));
    }
    // queue_webhook.go: quorum queues must be durable.
    if write.resource == QUEUE && spec["type"] == "quorum" && spec["durable"] != true {
        return Err(forbidden(
            "Quorum queues must have durable set to true".into(),
        ));
    }
    let Some(old) = write.old else {
        return Ok(());
    };
    // binding_webhook.go: the whole spec; queue_webhook.go and exchange_webhook.go: these.
    let immutable: &[&str] = match write.resource {
        BINDING => &[
            "vhost",
            "source",
            "destination",
            "destinationType",
            "routingKey",
            "arguments",
            "rabbitmqClusterReference",
        ],
        QUEUE => &[
            "name",
            "vhost",
            "rabbitmqClusterReference",
            "type",
            "autoDelete",
            "durable",
            "arguments",
        ],
        _ => &[
            "name",
            "vhost",
            "rabbitmqClusterReference",
            "type",
            "durable",
            "autoDelete",
        ],
    };
    // An omitted boolean counts as false on both sides.
    let value = |v: &Value, field: &str| match &v["spec"][field] {
        Value::Null if matches!(field, "durable" | "autoDelete") => Value::Bool(false),
        other => other.clone(),
    };
    for field in immutable {
        if value(old, field) != value(write.new, field) {
            return Err(forbidden(format!(
                "{kind}.spec.{field}: Forbidden: {field} cannot be updated"
            )));
        }
    }
    Ok(())
}

fn trigger(write: &Write) -> Result<(), Refusal> {
    const CORE: &str = "validation.webhook.eventing.knative.dev";
    const RABBIT: &str = "validation.webhook.rabbitmq.eventing.knative.dev";
    let spec = &write.new["spec"];
    // The defaulted broker label must be a valid label value (422).
    if let Some(broker) = spec["broker"].as_str()
        && !label_value(broker)
    {
        return Err(invalid(format!(
            "metadata.labels: Invalid value: {broker:?}: must be no more than 63 characters"
        )));
    }
    // eventing pkg/apis/eventing/v1/trigger_validation.go
    if spec["broker"].is_string() == spec["brokerRef"].is_object() {
        return Err(knative(
            CORE,
            "expected exactly one, got both or neither: spec.broker, spec.brokerRef".into(),
        ));
    }
    if spec["brokerRef"]["namespace"].is_string() {
        return Err(knative(
            CORE,
            "spec.brokerRef.namespace: cross-namespace-event-links is disabled".into(),
        ));
    }
    let subscriber = &spec["subscriber"];
    if !subscriber["ref"].is_object() && !subscriber["uri"].is_string() {
        return Err(knative(
            CORE,
            "expected at least one, got none: spec.subscriber.ref, spec.subscriber.uri".into(),
        ));
    }
    if let Some(attributes) = spec["filter"]["attributes"].as_object()
        && let Some(key) = attributes.keys().find(|k| !filter_key(k))
    {
        return Err(knative(
            CORE,
            format!("invalid key name {key:?}: spec.filter.attributes"),
        ));
    }
    // eventing-rabbitmq pkg/apis/eventing/v1alpha1/trigger_validation.go
    let annotations = &write.new["metadata"]["annotations"];
    if let Some(value) = annotations["rabbitmq.eventing.knative.dev/parallelism"].as_str() {
        let ok = value.parse::<i64>().is_ok_and(|n| (1..=1000).contains(&n));
        if !ok {
            return Err(knative(
                RABBIT,
                format!(
                    "expected 1 <= {value} <= 1000: metadata.annotations.rabbitmq.eventing.knative.dev/parallelism"
                ),
            ));
        }
    }
    if let Some(old) = write.old {
        if old["spec"]["broker"] != spec["broker"] {
            return Err(knative(
                CORE,
                "Immutable fields changed (-old +new): spec.broker".into(),
            ));
        }
        if old["spec"]["filter"] != spec["filter"] {
            return Err(knative(
                RABBIT,
                "Immutable fields changed (-old +new): spec.filter".into(),
            ));
        }
    }
    Ok(())
}

fn knative_service(write: &Write) -> Result<(), Refusal> {
    const SERVING: &str = "validation.webhook.serving.knative.dev";
    let name = write.new["metadata"]["name"].as_str().unwrap_or_default();
    // knative/serving pkg/apis/serving/metadata_validation.go
    if !dns_1035(name) {
        return Err(knative(
            SERVING,
            format!("not a DNS 1035 label: metadata.name {name:?}"),
        ));
    }
    if let Some(key) = write.new["metadata"]["annotations"]
        .as_object()
        .and_then(|a| a.keys().find(|k| k.starts_with("autoscaling.knative.dev/")))
    {
        return Err(knative(
            SERVING,
            format!("invalid key name {key:?}: metadata.annotations"),
        ));
    }
    // pkg/apis/serving/k8s_validation.go
    let containers = write.new["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() || containers.iter().any(|c| !c["image"].is_string()) {
        return Err(knative(
            SERVING,
            "missing field(s): spec.template.spec.containers[*].image".into(),
        ));
    }
    let ports: Vec<&Value> = containers
        .iter()
        .filter_map(|c| c["ports"].as_array())
        .flatten()
        .collect();
    if ports.len() > 1 {
        return Err(knative(
            SERVING,
            "more than one container port is set".into(),
        ));
    }
    for port in ports {
        let number = port["containerPort"].as_i64().unwrap_or(8080);
        if [8012, 8013, 8022, 9090, 9091, 8008].contains(&number) {
            return Err(knative(SERVING, format!("{number} is a reserved port")));
        }
        if !matches!(port["name"].as_str(), None | Some("" | "h2c" | "http1")) {
            return Err(knative(
                SERVING,
                format!("invalid port name {}", port["name"]),
            ));
        }
    }
    for var in containers
        .iter()
        .filter_map(|c| c["env"].as_array())
        .flatten()
    {
        let name = var["name"].as_str().unwrap_or_default();
        if ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"].contains(&name) {
            return Err(knative(
                SERVING,
                format!("{name} is a reserved environment variable"),
            ));
        }
    }
    Ok(())
}

fn apps(write: &Write) -> Result<(), Refusal> {
    // kubernetes pkg/apis/apps/validation/validation.go
    let Some(old) = write.old else {
        return Ok(());
    };
    let frozen: &[&str] = if write.resource == STATEFULSET {
        &[
            "selector",
            "serviceName",
            "podManagementPolicy",
            "volumeClaimTemplates",
        ]
    } else {
        &["selector"]
    };
    for field in frozen {
        if old["spec"][field] != write.new["spec"][field] {
            return Err(invalid(format!(
                "spec: Forbidden: updates to {} spec for field {field} are forbidden",
                write.resource
            )));
        }
    }
    Ok(())
}

/// Object metadata (apimachinery validation): a DNS-1123 subdomain name, valid label values.
fn metadata(object: &Value) -> Result<(), Refusal> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if !dns_1123_subdomain(name) {
        return Err(invalid(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
        )));
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if !value.as_str().is_some_and(label_value) {
                return Err(invalid(format!(
                    "metadata.labels: Invalid value: {value}: label {key} must be at most 63 characters of [A-Za-z0-9_.-], beginning and ending with an alphanumeric character"
                )));
            }
        }
    }
    Ok(())
}

fn dns_1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn dns_1035(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

fn filter_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}
