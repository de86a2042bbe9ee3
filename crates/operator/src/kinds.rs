//! The kinds of child objects ktwin manages, and how to address them on the API server.

use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

/// A kind of child object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChildKind {
    /// serving.knative.dev/v1 Service.
    KService,
    /// eventing.knative.dev/v1 Trigger.
    Trigger,
    /// rabbitmq.com/v1beta1 Binding.
    Binding,
    /// rabbitmq.com/v1beta1 Queue.
    Queue,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// v1 Service.
    Service,
}

impl ChildKind {
    /// Every kind, in apply order (queues before the bindings into them, services last).
    pub const ALL: [ChildKind; 7] = [
        ChildKind::Queue,
        ChildKind::KService,
        ChildKind::Trigger,
        ChildKind::Binding,
        ChildKind::Deployment,
        ChildKind::StatefulSet,
        ChildKind::Service,
    ];

    /// (group, version, kind, plural).
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            ChildKind::KService => ("serving.knative.dev", "v1", "Service", "services"),
            ChildKind::Trigger => ("eventing.knative.dev", "v1", "Trigger", "triggers"),
            ChildKind::Binding => ("rabbitmq.com", "v1beta1", "Binding", "bindings"),
            ChildKind::Queue => ("rabbitmq.com", "v1beta1", "Queue", "queues"),
            ChildKind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            ChildKind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            ChildKind::Service => ("", "v1", "Service", "services"),
        }
    }

    /// `apiVersion` of the kind.
    pub fn api_version(self) -> String {
        let (group, version, _, _) = self.gvk();
        if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        }
    }

    /// The kind name.
    pub fn kind(self) -> &'static str {
        self.gvk().2
    }

    /// `apiVersion Kind`, how conditions name an API, e.g. `rabbitmq.com/v1beta1 Binding`.
    pub fn api_name(self) -> String {
        format!("{} {}", self.api_version(), self.kind())
    }

    /// Fields the admission webhooks of this kind refuse to change on an existing object, as
    /// JSON paths; `true` marks a value compared whole (a map ktwin owns entirely), `false` one
    /// where fields only the server adds do not count. A change to any of them is made by
    /// deleting and recreating the object.
    ///
    /// Sources (see `../shared/reference/cluster-admission.md`): the topology operator's
    /// `internal/webhook/v1beta1/binding_webhook.go` (the whole Binding spec) and
    /// `queue_webhook.go`; eventing's `trigger_validation.go` (`spec.broker`) and
    /// eventing-rabbitmq's `trigger_validation.go` (`spec.filter`); Kubernetes'
    /// `pkg/apis/apps/validation/validation.go` (a Deployment's selector; a StatefulSet's spec
    /// except replicas, template, update strategy and a few others).
    pub fn immutable_fields(self) -> &'static [(&'static [&'static str], bool)] {
        const CLUSTER: (&[&str], bool) = (&["spec", "rabbitmqClusterReference"], false);
        match self {
            ChildKind::Binding => &[
                (&["spec", "vhost"], true),
                (&["spec", "source"], true),
                (&["spec", "destination"], true),
                (&["spec", "destinationType"], true),
                (&["spec", "routingKey"], true),
                (&["spec", "arguments"], true),
                CLUSTER,
            ],
            ChildKind::Queue => &[
                (&["spec", "name"], true),
                (&["spec", "vhost"], true),
                (&["spec", "type"], true),
                (&["spec", "autoDelete"], true),
                (&["spec", "durable"], true),
                (&["spec", "arguments"], true),
                CLUSTER,
            ],
            ChildKind::Trigger => &[(&["spec", "broker"], true), (&["spec", "filter"], true)],
            ChildKind::Deployment => &[(&["spec", "selector"], true)],
            ChildKind::StatefulSet => &[
                (&["spec", "selector"], true),
                (&["spec", "serviceName"], true),
                (&["spec", "podManagementPolicy"], true),
                (&["spec", "volumeClaimTemplates"], false),
            ],
            ChildKind::KService | ChildKind::Service => &[],
        }
    }

    /// The API resource for dynamic clients.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.gvk();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }
}

/// Objects ktwin reads but does not own.
pub mod external {
    use kube::core::{ApiResource, GroupVersionKind};

    /// eventing.knative.dev/v1 Broker.
    pub fn broker() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("eventing.knative.dev", "v1", "Broker"),
            "brokers",
        )
    }

    /// rabbitmq.com/v1beta1 Exchange.
    pub fn exchange() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rabbitmq.com", "v1beta1", "Exchange"),
            "exchanges",
        )
    }
}
