//! The Kubernetes realizer: renders a plan into Knative Serving/Eventing, RabbitMQ topology and
//! core objects. Pure: what the cluster must tell us (broker address, exchange and queue names
//! created by eventing-rabbitmq) comes in as [`Discovered`]; what is missing is reported, never
//! rendered as an empty string.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ktwin_events::{DeviceBinding, DeviceBindings, env, routing_key_of_mqtt_topic};
use ktwin_planner::{
    Autoscaling, DispatcherKind, DispatchersPlan, Endpoint, EnvValue, EventStorePlan,
    GATEWAY_TLS_DIR, GatewayPlan, InterfacePlan, KtwinConfig, MqttIngress, Plan, PlatformEnv,
    Route, RoutePurpose, ScaleMetric, StoreStorage, Subscriber,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::kinds::ChildKind;
use crate::names::{
    LABEL_EVENT_STORE, LABEL_MANAGED_BY, LABEL_OWNER_UID, LABEL_PUBLIC, LABEL_TRIGGER,
    LABEL_TWIN_INTERFACE, MANAGED_BY, MAX_KSERVICE, MAX_LABEL, dns_label, fit, label_name,
};

/// The seed filter of the event-store trigger: it matches no ktwin event, so the store receives
/// exactly what its bindings route into the trigger's queue.
pub const EVENT_STORE_SEED_TYPE: &str = "ktwin.event-store";
/// Binding argument naming the Binding object, making every broker-side binding unique so
/// deleting one never removes another's identical binding (RabbitMQ ignores `x-` arguments when
/// matching headers).
pub const BINDING_ID_ARGUMENT: &str = "x-ktwin-binding";
/// The most dispatcher workers eventing-rabbitmq accepts on a Trigger: its webhook refuses
/// `rabbitmq.eventing.knative.dev/parallelism` outside 1..=1000
/// (`pkg/apis/eventing/v1alpha1/trigger_validation.go`), so larger values are capped.
pub const MAX_TRIGGER_PARALLELISM: u32 = 1000;
/// Name of the embedded event store's volume (and of its claim template).
pub const STORE_VOLUME: &str = "data";
/// The non-root user of the `ktwin` image (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;

/// What only the cluster knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The broker ingress URL (`Broker.status.address.url`).
    pub broker_url: Option<String>,
    /// The broker's headers exchange (`Exchange.spec.name` of the Exchange eventing-rabbitmq
    /// names after the Broker's UID).
    pub broker_exchange: Option<String>,
    /// Trigger name → its queue's RabbitMQ name (`Queue.spec.name`, labelled with the trigger).
    pub trigger_queues: BTreeMap<String, String>,
}

impl Discovered {
    /// Symbolic values for offline rendering (`ktwin plan`): every object renders, and each
    /// cluster-provided value reads `${...}`.
    pub fn placeholders(plan: &Plan) -> Self {
        let mut trigger_queues = BTreeMap::new();
        for service in plan.services() {
            let trigger = twin_trigger_name(&service.interface);
            trigger_queues.insert(trigger.clone(), format!("${{queue-of-trigger:{trigger}}}"));
        }
        if let Some(store) = &plan.event_store {
            let trigger = event_store_trigger_name(&store.name);
            trigger_queues.insert(trigger.clone(), format!("${{queue-of-trigger:{trigger}}}"));
        }
        Self {
            broker_url: Some(format!("${{url-of-broker:{}}}", plan.broker.name)),
            broker_exchange: Some(format!("${{exchange-of-broker:{}}}", plan.broker.name)),
            trigger_queues,
        }
    }
}

/// A dependency the cluster does not provide (yet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Missing {
    /// The API server does not serve this API (`group/version Kind`): its CRD is not
    /// installed. Objects of that kind are skipped; everything else still applies. It sorts
    /// first: it is the cause of the others.
    Api(String),
    /// The Broker has no address: absent or not ready.
    Broker(String),
    /// eventing-rabbitmq has not created the broker's exchange.
    BrokerExchange(String),
    /// eventing-rabbitmq has not created the queue of this trigger.
    TriggerQueue(String),
}

impl Missing {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Missing::Broker(_) => "BrokerNotReady",
            Missing::BrokerExchange(_) => "BrokerExchangeMissing",
            Missing::TriggerQueue(_) => "TriggerQueueMissing",
            Missing::Api(_) => "ApiNotInstalled",
        }
    }

    /// Condition message.
    pub fn message(&self) -> String {
        match self {
            Missing::Broker(name) => format!(
                "Broker {name:?} is missing or has no address yet; install Knative Eventing and eventing-rabbitmq and create the Broker"
            ),
            Missing::BrokerExchange(name) => format!(
                "no RabbitMQ Exchange labelled eventing.knative.dev/broker={name}; is eventing-rabbitmq with the messaging topology operator installed?"
            ),
            Missing::TriggerQueue(trigger) => {
                format!("eventing-rabbitmq has not created the queue of Trigger {trigger:?} yet")
            }
            Missing::Api(api) => format!(
                "the API server does not serve {api}: install its CustomResourceDefinition (Knative Serving/Eventing, eventing-rabbitmq, the RabbitMQ messaging topology operator)"
            ),
        }
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Its kind.
    pub kind: ChildKind,
    /// The full object (apiVersion, kind, metadata, spec).
    pub object: Value,
}

impl Desired {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }
}

/// The custom resource owning rendered objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `apiVersion`, e.g. `dtd.ktwin/v0`.
    pub api_version: String,
    /// Kind, e.g. `TwinInterface`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID; `None` when rendering offline (no owner reference is written then).
    pub uid: Option<String>,
}

impl Owner {
    /// The owner of `object`.
    pub fn of<K: kube::Resource<DynamicType = ()>>(object: &K) -> Self {
        Self {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: object.meta().name.clone().unwrap_or_default(),
            uid: object.meta().uid.clone(),
        }
    }

    fn reference(&self) -> Option<OwnerReference> {
        self.uid.as_ref().map(|uid| OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }
}

/// What rendering produced: the objects, and the dependencies that kept others from rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// Objects to apply, in apply order.
    pub objects: Vec<Desired>,
    /// Missing dependencies, sorted and unique.
    pub missing: Vec<Missing>,
}

impl Rendered {
    fn push(&mut self, kind: ChildKind, object: Value) {
        self.objects.push(Desired { kind, object });
    }

    fn miss(&mut self, missing: Missing) {
        if !self.missing.contains(&missing) {
            self.missing.push(missing);
        }
    }

    fn extend(&mut self, other: Rendered) {
        self.objects.extend(other.objects);
        for missing in other.missing {
            self.miss(missing);
        }
    }

    fn finish(mut self) -> Self {
        let order = |k: ChildKind| ChildKind::ALL.iter().position(|x| *x == k);
        self.objects.sort_by_key(|d| order(d.kind));
        self.missing.sort();
        self
    }
}

/// Name of the Knative Service of an interface's twins.
pub fn twin_service_name(interface: &str) -> String {
    dns_label(&[interface], MAX_KSERVICE)
}

/// Name of the Trigger feeding an interface's service.
pub fn twin_trigger_name(interface: &str) -> String {
    dns_label(&[interface], MAX_LABEL)
}

/// Name of the Knative Service of an event store.
pub fn event_store_service_name(store: &str) -> String {
    dns_label(&[store], MAX_KSERVICE)
}

/// Name of the Trigger feeding an event store.
pub fn event_store_trigger_name(store: &str) -> String {
    label_name(&[store, "trigger"])
}

/// Name of the Binding realizing a route (the original's names, §3.3 of the reference).
pub fn route_binding_name(route: &Route) -> String {
    let owner = route.owner.as_str();
    match &route.purpose {
        RoutePurpose::Real => label_name(&[owner, "real-dispatcher"]),
        RoutePurpose::Command(command) if route.subscriber == Subscriber::Devices => {
            label_name(&[owner, command, "device-command-dispatcher"])
        }
        RoutePurpose::Command(command) => label_name(&[owner, command, "command-dispatcher"]),
        RoutePurpose::AggregateReal(rel) => label_name(&[owner, rel, "real-dispatcher"]),
        RoutePurpose::Virtual => label_name(&[owner, "virtual-cloud-event-dispatcher"]),
        RoutePurpose::AggregateVirtual(rel) => label_name(&[owner, rel, "virtual-dispatcher"]),
        RoutePurpose::PersistReal => label_name(&[owner, "real-event-store"]),
        RoutePurpose::PersistVirtual => label_name(&[owner, "virtual-event-store"]),
        RoutePurpose::Store => label_name(&[owner, "event-store"]),
    }
}

/// Name of the Binding bridging the telemetry topic an interface declares with the DTDL MQTT
/// extension.
pub fn declared_ingress_binding_name(interface: &str) -> String {
    label_name(&[interface, "declared-mqtt-dispatcher"])
}

/// Name of the Binding realizing a device ingress.
pub fn ingress_binding_name(ingress: &MqttIngress) -> String {
    match &ingress.purpose {
        RoutePurpose::AggregateReal(rel) => {
            label_name(&[&ingress.owner, rel, "real-mqtt-dispatcher"])
        }
        _ => label_name(&[&ingress.owner, "real-mqtt-dispatcher"]),
    }
}

/// Renders plans for one world.
#[derive(Debug, Clone)]
pub struct Renderer<'a> {
    /// Platform configuration.
    pub config: &'a KtwinConfig,
    /// The world's namespace.
    pub namespace: &'a str,
    /// What the cluster told us.
    pub discovered: &'a Discovered,
    /// The world's event store name, if any.
    pub event_store: Option<&'a str>,
    /// The MQTT plugin's exchange, when the world has dispatchers.
    pub mqtt_exchange: Option<&'a str>,
}

impl<'a> Renderer<'a> {
    /// A renderer for `plan`'s world.
    pub fn for_plan(plan: &'a Plan, config: &'a KtwinConfig, discovered: &'a Discovered) -> Self {
        Self {
            config,
            namespace: &plan.namespace,
            discovered,
            event_store: plan.event_store.as_ref().map(|s| s.name.as_str()),
            mqtt_exchange: plan.dispatchers.as_ref().map(|d| d.mqtt_exchange.as_str()),
        }
    }

    fn metadata(&self, name: &str, owner: &Owner, labels: &[(&str, &str)]) -> Value {
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), fit(v, MAX_LABEL)))
            .collect();
        all.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        if let Some(uid) = &owner.uid {
            all.insert(LABEL_OWNER_UID.into(), uid.clone());
        }
        let mut meta = json!({"name": name, "namespace": self.namespace, "labels": all});
        if let Some(reference) = owner.reference() {
            meta["ownerReferences"] = json!([reference]);
        }
        meta
    }

    fn endpoint(&self, endpoint: Endpoint) -> Result<String, Missing> {
        let broker = &self.config.broker.name;
        match endpoint {
            Endpoint::Broker => self
                .discovered
                .broker_url
                .clone()
                .ok_or_else(|| Missing::Broker(broker.clone())),
            Endpoint::BrokerExchange => self
                .discovered
                .broker_exchange
                .clone()
                .ok_or_else(|| Missing::BrokerExchange(broker.clone())),
            Endpoint::EventStore => Ok(self.config.service_url(
                &event_store_service_name(self.event_store.unwrap_or_default()),
                self.namespace,
            )),
            // The kubelet expands `$(VAR)` from the secret-referenced variables [`Self::env`]
            // defines just before, so credentials never appear in the object.
            Endpoint::Amqp => Ok(format!(
                "amqp://$({}):$({})@$({}):$({})/{}",
                env::AMQP_USERNAME,
                env::AMQP_PASSWORD,
                env::AMQP_HOST,
                env::AMQP_PORT,
                self.config.vhost.replace('/', "%2f")
            )),
            Endpoint::Graph => Ok(format!(
                "{}{}",
                self.config
                    .service_url(&self.config.graph_service, self.namespace),
                self.config.graph_path
            )),
        }
    }

    fn env(&self, vars: &[PlatformEnv]) -> Result<Vec<EnvVar>, Missing> {
        let literal = |name: &str, value: String| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            value_from: None,
        };
        let secret = |name: &str, secret: &str, key: &str| EnvVar {
            name: name.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_owned(),
                    key: key.to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }),
        };
        let mut out = Vec::new();
        for e in vars {
            match &e.value {
                EnvValue::Literal(value) => out.push(literal(&e.name, value.clone())),
                EnvValue::SecretKey { name, key } => out.push(secret(&e.name, name, key)),
                EnvValue::Endpoint(Endpoint::Amqp) => {
                    let s = &self.config.rabbitmq_secret;
                    for (var, key) in [
                        (env::AMQP_USERNAME, &s.username_key),
                        (env::AMQP_PASSWORD, &s.password_key),
                        (env::AMQP_HOST, &s.host_key),
                        (env::AMQP_PORT, &s.port_key),
                    ] {
                        out.push(secret(var, &s.name, key));
                    }
                    out.push(literal(&e.name, self.endpoint(Endpoint::Amqp)?));
                }
                EnvValue::Endpoint(endpoint) => {
                    out.push(literal(&e.name, self.endpoint(*endpoint)?))
                }
            }
        }
        Ok(out)
    }

    /// `spec.broker`: eventing-rabbitmq resolves nothing else (the planner refuses a broker in
    /// another namespace).
    fn broker_ref(&self) -> Value {
        json!({"broker": self.config.broker.name})
    }

    fn cluster_reference(&self) -> Value {
        let cluster = &self.config.rabbitmq_cluster;
        json!({"name": cluster.name, "namespace": cluster.namespace_in(self.namespace)})
    }

    /// Renders the objects of one interface (Knative Service, Trigger, Bindings).
    pub fn interface(&self, plan: &InterfacePlan, owner: &Owner) -> Rendered {
        let mut out = Rendered::default();
        let labels = [(LABEL_TWIN_INTERFACE, plan.interface.as_str())];
        if let Some(service) = &plan.service {
            let name = twin_service_name(&plan.interface);
            match self.env(&service.env) {
                Ok(env) => {
                    let template = knative_template(
                        &service.template,
                        &service.autoscaling,
                        &env,
                        &service.node_selector,
                    );
                    out.push(
                        ChildKind::KService,
                        json!({
                            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
                            "metadata": self.metadata(&name, owner, &labels),
                            "spec": {"template": template},
                        }),
                    );
                }
                Err(missing) => out.miss(missing),
            }
            let trigger = twin_trigger_name(&plan.interface);
            let seed = EVENT_STORE_SEED_TYPE.to_owned();
            let filter = plan
                .routes
                .iter()
                .find(|r| r.purpose == RoutePurpose::Real)
                .map(|r| r.event_type.to_string())
                .unwrap_or(seed);
            let mut meta = self.metadata(&trigger, owner, &labels);
            let annotations = dispatcher_annotations(service.autoscaling.parallelism, None);
            if !annotations.is_empty() {
                meta["annotations"] = json!(annotations);
            }
            let mut spec = self.broker_ref();
            spec["filter"] = json!({"attributes": {"type": filter}});
            spec["subscriber"] = json!({"ref": {
                "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}});
            out.push(
                ChildKind::Trigger,
                json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                       "metadata": meta, "spec": spec}),
            );
        }
        for route in plan.routes.iter().filter(|r| !self.is_trigger_filter(r)) {
            match self.route_binding(route, owner, &labels) {
                Ok(binding) => out.push(ChildKind::Binding, binding),
                Err(missing) => out.miss(missing),
            }
        }
        if let Some(device) = &plan.device {
            out.extend(self.device_bindings(device, owner, &labels));
        }
        if let Some(exchange) = self.mqtt_exchange {
            for ingress in &plan.mqtt_ingress {
                let name = ingress_binding_name(ingress);
                let routing_key = ktwin_events::TopicKind::Real
                    .routing_key_pattern(&ingress.interface)
                    .unwrap_or_default();
                out.push(
                    ChildKind::Binding,
                    json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
                    "metadata": self.metadata(&name, owner, &labels),
                    "spec": {
                        "vhost": self.config.vhost,
                        "source": exchange,
                        "destination": DispatcherKind::Mqtt.queue(),
                        "destinationType": "queue",
                        "routingKey": routing_key,
                        "arguments": {BINDING_ID_ARGUMENT: name},
                        "rabbitmqClusterReference": self.cluster_reference(),
                    }}),
                );
            }
        }
        out.finish()
    }

    /// The Bindings of an interface's declared device topics (DTDL MQTT extension): its
    /// telemetry topic, as RabbitMQ's MQTT plugin makes a routing key of it, into the MQTT
    /// dispatcher's queue; its commands into the CloudEvent dispatcher's queue, which sends
    /// them on the declared command topic.
    fn device_bindings(
        &self,
        device: &DeviceBinding,
        owner: &Owner,
        labels: &[(&str, &str)],
    ) -> Rendered {
        let mut out = Rendered::default();
        let filter = DeviceBindings::new(vec![device.clone()])
            .ok()
            .and_then(|bindings| bindings.telemetry_filter(&device.interface));
        if let (Some(exchange), Some(filter)) = (self.mqtt_exchange, filter) {
            let name = declared_ingress_binding_name(&device.interface);
            out.push(
                ChildKind::Binding,
                json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
                "metadata": self.metadata(&name, owner, labels),
                "spec": {
                    "vhost": self.config.vhost,
                    "source": exchange,
                    "destination": DispatcherKind::Mqtt.queue(),
                    "destinationType": "queue",
                    "routingKey": routing_key_of_mqtt_topic(&filter),
                    "arguments": {BINDING_ID_ARGUMENT: name},
                    "rabbitmqClusterReference": self.cluster_reference(),
                }}),
            );
        }
        for event_type in device.command_event_types() {
            let command = event_type.command_name().unwrap_or_default().to_owned();
            let route = Route {
                owner: device.interface.clone(),
                purpose: RoutePurpose::Command(command),
                event_type,
                subscriber: Subscriber::Devices,
            };
            match self.route_binding(&route, owner, labels) {
                Ok(binding) => out.push(ChildKind::Binding, binding),
                Err(missing) => out.miss(missing),
            }
        }
        out
    }

    /// Whether the route is realized by the Trigger's own filter rather than a Binding.
    fn is_trigger_filter(&self, route: &Route) -> bool {
        route.purpose == RoutePurpose::Real && matches!(route.subscriber, Subscriber::Twin(_))
    }

    fn route_binding(
        &self,
        route: &Route,
        owner: &Owner,
        labels: &[(&str, &str)],
    ) -> Result<Value, Missing> {
        let (trigger, queue) = match &route.subscriber {
            Subscriber::Twin(interface) => {
                let trigger = twin_trigger_name(interface);
                let queue = self.trigger_queue(&trigger)?;
                (trigger, queue)
            }
            Subscriber::EventStore(store) => {
                let trigger = event_store_trigger_name(store);
                let queue = self.trigger_queue(&trigger)?;
                (trigger, queue)
            }
            Subscriber::Devices => (
                DispatcherKind::CloudEvent.name().to_owned(),
                DispatcherKind::CloudEvent.queue(),
            ),
        };
        let exchange = self.endpoint(Endpoint::BrokerExchange)?;
        let name = route_binding_name(route);
        Ok(
            json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
            "metadata": self.metadata(&name, owner, labels),
            "spec": {
                "vhost": self.config.vhost,
                "source": exchange,
                "destination": queue,
                "destinationType": "queue",
                "arguments": {
                    "type": route.event_type.to_string(),
                    "x-match": "all",
                    "x-knative-trigger": trigger,
                    BINDING_ID_ARGUMENT: name,
                },
                "rabbitmqClusterReference": self.cluster_reference(),
            }}),
        )
    }

    fn trigger_queue(&self, trigger: &str) -> Result<String, Missing> {
        self.discovered
            .trigger_queues
            .get(trigger)
            .cloned()
            .ok_or_else(|| Missing::TriggerQueue(trigger.to_owned()))
    }

    /// Renders an event store: with a database, a Knative Service scaling its stateless
    /// replicas; embedded, a one-replica StatefulSet on a PersistentVolumeClaim behind a
    /// Service. Either way the Trigger feeding it, and the same URL.
    pub fn event_store(&self, plan: &EventStorePlan, owner: &Owner) -> Rendered {
        let mut out = Rendered::default();
        let name = event_store_service_name(&plan.name);
        let labels = [(LABEL_EVENT_STORE, plan.name.as_str())];
        let subscriber = match self.env(&plan.env) {
            Err(missing) => {
                out.miss(missing);
                None
            }
            Ok(env) => Some(match &plan.storage {
                StoreStorage::Database { .. } => {
                    out.push(ChildKind::KService, self.store_kservice(plan, owner, env));
                    json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name})
                }
                StoreStorage::Embedded { .. } => {
                    out.extend(self.store_statefulset(plan, owner, env));
                    json!({"apiVersion": "v1", "kind": "Service", "name": name})
                }
            }),
        };
        let subscriber = subscriber.unwrap_or_else(
            || json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}),
        );
        let trigger = event_store_trigger_name(&plan.name);
        let mut meta = self.metadata(&trigger, owner, &labels);
        let annotations = dispatcher_annotations(
            plan.autoscaling.parallelism,
            plan.dispatcher_resources.as_ref(),
        );
        if !annotations.is_empty() {
            meta["annotations"] = json!(annotations);
        }
        let mut spec = self.broker_ref();
        spec["filter"] = json!({"attributes": {"type": EVENT_STORE_SEED_TYPE}});
        spec["subscriber"] = json!({"ref": subscriber, "uri": plan.ingest_path});
        out.push(
            ChildKind::Trigger,
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                   "metadata": meta, "spec": spec}),
        );
        out.finish()
    }

    fn store_container(&self, plan: &EventStorePlan, env: Vec<EnvVar>) -> Container {
        let port = self.config.service_port;
        Container {
            name: "event-store".into(),
            image: Some(plan.image.clone()),
            args: Some(plan.args.clone()),
            env: Some(env),
            resources: plan.resources.clone(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(port),
                ..Default::default()
            }]),
            readiness_probe: Some(http_probe("/ready", port)),
            liveness_probe: Some(http_probe("/health", port)),
            ..Default::default()
        }
    }

    fn store_kservice(&self, plan: &EventStorePlan, owner: &Owner, env: Vec<EnvVar>) -> Value {
        let name = event_store_service_name(&plan.name);
        let labels = [(LABEL_EVENT_STORE, plan.name.as_str())];
        let mut container = self.store_container(plan, Vec::new());
        // Knative names the port itself and refuses a probe port of its own choosing.
        container.ports = Some(vec![ContainerPort {
            container_port: i32::from(self.config.service_port),
            ..Default::default()
        }]);
        container.liveness_probe = None;
        container.readiness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ready".into()),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        });
        let template = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![container],
                ..Default::default()
            }),
        };
        let template = knative_template(&template, &plan.autoscaling, &env, &plan.node_selector);
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": self.metadata(&name, owner, &labels),
            "spec": {"template": template}})
    }

    /// The embedded store: one replica owning its volume (a second would open the same
    /// database), reached through a Service on port 80 like a Knative service.
    fn store_statefulset(
        &self,
        plan: &EventStorePlan,
        owner: &Owner,
        env: Vec<EnvVar>,
    ) -> Rendered {
        let StoreStorage::Embedded {
            size,
            storage_class,
            path,
        } = &plan.storage
        else {
            return Rendered::default();
        };
        let name = event_store_service_name(&plan.name);
        let selector: BTreeMap<String, String> =
            [(LABEL_EVENT_STORE.to_owned(), fit(&plan.name, MAX_LABEL))].into();
        let mut container = self.store_container(plan, env);
        container.volume_mounts = Some(vec![VolumeMount {
            name: STORE_VOLUME.into(),
            mount_path: path.clone(),
            ..Default::default()
        }]);
        container.security_context = Some(restricted_container());
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(STORE_VOLUME.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_owned(), Quantity(size.clone()))].into()),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        };
        let meta: ObjectMeta = serde_json::from_value(self.metadata(
            &name,
            owner,
            &[(LABEL_EVENT_STORE, plan.name.as_str())],
        ))
        .unwrap_or_default();
        let statefulset = StatefulSet {
            metadata: meta.clone(),
            spec: StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(name.clone()),
                selector: label_selector(&selector),
                template: pod_template(&selector, container, &plan.node_selector),
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            },
            status: None,
        };
        let mut out = Rendered::default();
        out.push(ChildKind::StatefulSet, typed_object(&statefulset));
        out.push(
            ChildKind::Service,
            typed_object(&http_service(meta, selector, 80)),
        );
        out
    }

    /// Renders the dispatchers of an MQTTTrigger (Queues, Deployments, metrics Services).
    pub fn dispatchers(&self, plan: &DispatchersPlan, owner: &Owner) -> Rendered {
        let mut out = Rendered::default();
        for dispatcher in [&plan.mqtt, &plan.cloud_event] {
            out.push(
                ChildKind::Queue,
                json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Queue",
                    "metadata": self.metadata(&dispatcher.queue, owner, &[(LABEL_TRIGGER, dispatcher.name.as_str())]),
                    "spec": {
                        "name": dispatcher.queue,
                        "vhost": self.config.vhost,
                        "type": plan.queue_type,
                        "durable": true,
                        "autoDelete": false,
                        "rabbitmqClusterReference": self.cluster_reference(),
                    }}),
            );
            match self.env(&dispatcher.env) {
                Ok(env) => {
                    let workload = Workload {
                        name: &dispatcher.name,
                        image: &dispatcher.image,
                        args: &dispatcher.args,
                        replicas: dispatcher.replicas,
                        resources: dispatcher.resources.clone(),
                        env,
                        node_selector: &dispatcher.node_selector,
                        service_type: "ClusterIP",
                        port: self.config.service_port,
                        tls_secret: None,
                    };
                    let meta = self.metadata(
                        &dispatcher.name,
                        owner,
                        &[(LABEL_TRIGGER, &dispatcher.name)],
                    );
                    out.extend(workload.render(meta));
                }
                Err(missing) => out.miss(missing),
            }
        }
        out.finish()
    }

    /// Renders a gateway (Deployment and Service).
    pub fn gateway(&self, plan: &GatewayPlan, owner: &Owner) -> Rendered {
        match self.env(&plan.env) {
            Ok(env) => {
                let workload = Workload {
                    name: &plan.name,
                    image: &plan.image,
                    args: &plan.args,
                    replicas: plan.replicas,
                    resources: plan.resources.clone(),
                    env,
                    node_selector: &BTreeMap::new(),
                    service_type: &plan.service_type,
                    port: plan.port,
                    tls_secret: plan.tls_secret.as_deref(),
                };
                let meta = self.metadata(&plan.name, owner, &[(LABEL_TRIGGER, &plan.name)]);
                let mut rendered = workload.render(meta);
                // Clients outside the world reach a gateway: the world's NetworkPolicy spares it.
                for desired in &mut rendered.objects {
                    if desired.kind == ChildKind::Deployment {
                        desired.object["spec"]["template"]["metadata"]["labels"][LABEL_PUBLIC] =
                            json!("true");
                    }
                }
                rendered.finish()
            }
            Err(missing) => Rendered {
                objects: Vec::new(),
                missing: vec![missing],
            },
        }
    }
}

/// A Deployment running one `ktwin` component, and the Service in front of its HTTP port
/// (health, readiness, metrics and its API), both selected by `ktwin/trigger=<name>` as the
/// original's ServiceMonitor expects.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// Name of the Deployment, its container and Service.
    pub name: &'a str,
    /// Container image.
    pub image: &'a str,
    /// Container arguments (the `ktwin` subcommand).
    pub args: &'a [String],
    /// Replicas.
    pub replicas: u32,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Container environment.
    pub env: Vec<EnvVar>,
    /// Node selector of the pods.
    pub node_selector: &'a BTreeMap<String, String>,
    /// Type of the Service.
    pub service_type: &'a str,
    /// Port the container listens on and the Service exposes.
    pub port: u16,
    /// A `kubernetes.io/tls` Secret mounted read-only at [`GATEWAY_TLS_DIR`]: the container
    /// serves HTTPS (its probes too).
    pub tls_secret: Option<&'a str>,
}

impl Workload<'_> {
    /// The Deployment and the Service, with `metadata` (name, namespace, labels, owner).
    pub fn render(self, metadata: Value) -> Rendered {
        let mut out = Rendered::default();
        let selector: BTreeMap<String, String> =
            [(LABEL_TRIGGER.to_owned(), self.name.to_owned())].into();
        let meta: ObjectMeta = serde_json::from_value(metadata).unwrap_or_default();
        let container = Container {
            name: self.name.to_owned(),
            image: Some(self.image.to_owned()),
            args: Some(self.args.to_vec()),
            env: Some(self.env),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(self.port),
                ..Default::default()
            }]),
            resources: self.resources,
            liveness_probe: Some(http_probe("/health", self.port)),
            readiness_probe: Some(http_probe("/ready", self.port)),
            security_context: Some(restricted_container()),
            ..Default::default()
        };
        let mut template = pod_template(&selector, container, self.node_selector);
        if let Some(secret) = self.tls_secret {
            serve_tls_from(&mut template, secret);
        }
        let deployment = Deployment {
            metadata: meta.clone(),
            spec: DeploymentSpec {
                replicas: Some(i32::try_from(self.replicas).unwrap_or(i32::MAX)),
                selector: label_selector(&selector),
                template,
                ..Default::default()
            },
            status: None,
        };
        out.push(ChildKind::Deployment, typed_object(&deployment));
        let mut service = http_service(meta, selector, self.port);
        if let Some(spec) = service.spec.as_mut() {
            spec.type_ = Some(self.service_type.to_owned());
        }
        out.push(ChildKind::Service, typed_object(&service));
        out
    }
}

fn label_selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    }
}

/// The pods of a platform workload: labelled for its selector, restricted, on the configured
/// nodes.
fn pod_template(
    labels: &BTreeMap<String, String>,
    container: Container,
    node_selector: &BTreeMap<String, String>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
            security_context: Some(restricted_pod()),
            ..Default::default()
        }),
    }
}

/// Mounts the certificate Secret `secret` into the pod's one container, whose probes then
/// speak HTTPS (the kubelet does not check the certificate).
fn serve_tls_from(template: &mut PodTemplateSpec, secret: &str) {
    const VOLUME: &str = "tls";
    let Some(pod) = template.spec.as_mut() else {
        return;
    };
    pod.volumes = Some(vec![Volume {
        name: VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    for container in &mut pod.containers {
        container.volume_mounts = Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: GATEWAY_TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]);
        for probe in [
            &mut container.liveness_probe,
            &mut container.readiness_probe,
        ] {
            if let Some(get) = probe.as_mut().and_then(|probe| probe.http_get.as_mut()) {
                get.scheme = Some("HTTPS".into());
            }
        }
    }
}

/// A Service exposing `port` of the pods selected by `selector` on their `http` port.
fn http_service(metadata: ObjectMeta, selector: BTreeMap<String, String>, port: u16) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(port),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Everything the operator would apply for `plan` (without the install bundle's parts), with
/// owners named but without uids.
pub fn render_plan(plan: &Plan, config: &KtwinConfig, discovered: &Discovered) -> Rendered {
    let renderer = Renderer::for_plan(plan, config, discovered);
    let owner = |api_version: &str, kind: &str, name: &str| Owner {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: None,
    };
    let mut out = Rendered::default();
    if let Some(dispatchers) = &plan.dispatchers {
        out.extend(renderer.dispatchers(
            dispatchers,
            &owner("core.ktwin/v0", "MQTTTrigger", &dispatchers.name),
        ));
    }
    if let Some(store) = &plan.event_store {
        out.extend(renderer.event_store(store, &owner("core.ktwin/v0", "EventStore", &store.name)));
    }
    for interface in &plan.interfaces {
        out.extend(renderer.interface(
            interface,
            &owner("dtd.ktwin/v0", "TwinInterface", &interface.interface),
        ));
    }
    for gateway in &plan.gateways {
        out.extend(renderer.gateway(gateway, &owner("core.ktwin/v0", "Gateway", &gateway.name)));
    }
    out.finish()
}

fn typed_object<T: k8s_openapi::Resource + Serialize>(object: &T) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = json!(T::API_VERSION);
    value["kind"] = json!(T::KIND);
    let map = value
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    // apiVersion and kind first, for readable output.
    let mut ordered = serde_json::Map::new();
    for key in ["apiVersion", "kind", "metadata", "spec"] {
        if let Some(v) = map.get(key) {
            ordered.insert(key.into(), v.clone());
        }
    }
    Value::Object(ordered)
}

fn http_probe(path: &str, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    }
}

/// The pod-level security of every platform pod: not root (the image's user 65532, which
/// also owns mounted volumes), the runtime's default seccomp profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The container-level security of every platform container.
pub fn restricted_container() -> k8s_openapi::api::core::v1::SecurityContext {
    k8s_openapi::api::core::v1::SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// A Knative container gets what [`restricted_pod`] and [`restricted_container`] give other
/// pods, at container level (Knative refuses most pod-level fields unless a feature flag is
/// on), except a user id: the user's image picks its own non-root user. A field the user's
/// template sets explicitly is kept (a service that must write to its root filesystem says so).
fn restrict_knative_container(container: &mut Container) {
    let restricted = restricted_container();
    let context = container
        .security_context
        .get_or_insert_with(Default::default);
    context.allow_privilege_escalation = context
        .allow_privilege_escalation
        .or(restricted.allow_privilege_escalation);
    context.run_as_non_root = context.run_as_non_root.or(restricted.run_as_non_root);
    context.read_only_root_filesystem = context
        .read_only_root_filesystem
        .or(restricted.read_only_root_filesystem);
    if context.capabilities.is_none() {
        context.capabilities = restricted.capabilities;
    }
    if context.seccomp_profile.is_none() {
        context.seccomp_profile = restricted_pod().seccomp_profile;
    }
}

/// The eventing-rabbitmq trigger annotations for dispatcher prefetch and resources; absent
/// values are left out (the original wrote `"0"`, §10.16).
fn dispatcher_annotations(
    parallelism: Option<u32>,
    resources: Option<&ResourceRequirements>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(parallelism) = parallelism {
        annotations.insert(
            "rabbitmq.eventing.knative.dev/parallelism".into(),
            parallelism.clamp(1, MAX_TRIGGER_PARALLELISM).to_string(),
        );
    }
    if let Some(resources) = resources {
        for (side, list) in [
            ("request", &resources.requests),
            ("limit", &resources.limits),
        ] {
            for resource in ["cpu", "memory"] {
                if let Some(quantity) = list.as_ref().and_then(|l| l.get(resource)) {
                    annotations.insert(
                        format!("rabbitmq.eventing.knative.dev/{resource}-{side}"),
                        quantity.0.clone(),
                    );
                }
            }
        }
    }
    annotations
}

/// The Knative revision template: the user's template kept as is, autoscaling annotations added,
/// platform env replacing same-named user variables, extra node selector entries added where
/// the user has none.
fn knative_template(
    template: &PodTemplateSpec,
    autoscaling: &Autoscaling,
    env: &[EnvVar],
    node_selector: &BTreeMap<String, String>,
) -> Value {
    let mut template = template.clone();
    let metadata = template.metadata.get_or_insert_with(Default::default);
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    annotations.extend(autoscaling_annotations(autoscaling));
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    let spec = template.spec.get_or_insert_with(Default::default);
    for container in &mut spec.containers {
        restrict_knative_container(container);
        let vars = container.env.get_or_insert_with(Vec::new);
        for platform in env {
            match vars.iter_mut().find(|v| v.name == platform.name) {
                Some(existing) => *existing = platform.clone(),
                None => vars.push(platform.clone()),
            }
        }
    }
    if !node_selector.is_empty() {
        let selector = spec.node_selector.get_or_insert_with(Default::default);
        for (key, value) in node_selector {
            selector.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    serde_json::to_value(&template).unwrap_or_default()
}

fn autoscaling_annotations(autoscaling: &Autoscaling) -> BTreeMap<String, String> {
    let key = |k: &str| format!("autoscaling.knative.dev/{k}");
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Option<u32>| {
        if let Some(v) = v {
            out.insert(key(k), v.to_string());
        }
    };
    put("min-scale", autoscaling.min_scale);
    put("max-scale", autoscaling.max_scale);
    put("target", autoscaling.target);
    put(
        "target-utilization-percentage",
        autoscaling.target_utilization_percentage,
    );
    if let Some(metric) = autoscaling.metric {
        out.insert(key("metric"), metric.as_str().to_owned());
        // CPU and memory scaling are only implemented by the HPA autoscaler class.
        if matches!(metric, ScaleMetric::Cpu | ScaleMetric::Memory) {
            out.insert(key("class"), "hpa.autoscaling.knative.dev".into());
        }
    }
    out
}

/// The routing the Kubernetes objects implement, read back from them as RabbitMQ and Knative
/// would execute it: a Trigger's filter type reaches its subscriber; a broker-exchange Binding's
/// `type` reaches whoever consumes its destination queue (a trigger's queue → that trigger's
/// subscriber, the CloudEvent dispatcher's queue → devices); a topic Binding into the MQTT
/// dispatcher's queue bridges `ktwin.real.<iface>.#`. Equal to [`ktwin_planner::routing_table`]
/// of the plan when the realizer is faithful.
pub fn routing_table_of(
    objects: &[Desired],
    discovered: &Discovered,
) -> ktwin_planner::RoutingTable {
    let mut table = ktwin_planner::RoutingTable::default();
    let subscriber_of_trigger = |trigger: &Value| -> Option<Subscriber> {
        let labels = &trigger["metadata"]["labels"];
        if let Some(interface) = labels[LABEL_TWIN_INTERFACE].as_str() {
            return Some(Subscriber::Twin(interface.to_owned()));
        }
        labels[LABEL_EVENT_STORE]
            .as_str()
            .map(|s| Subscriber::EventStore(s.to_owned()))
    };
    let triggers: BTreeMap<&str, &Value> = objects
        .iter()
        .filter(|d| d.kind == ChildKind::Trigger)
        .map(|d| (d.name(), &d.object))
        .collect();
    let mut queue_subscribers: BTreeMap<String, Subscriber> = BTreeMap::new();
    for (trigger, queue) in &discovered.trigger_queues {
        if let Some(subscriber) = triggers
            .get(trigger.as_str())
            .and_then(|t| subscriber_of_trigger(t))
        {
            queue_subscribers.insert(queue.clone(), subscriber);
        }
    }
    queue_subscribers.insert(DispatcherKind::CloudEvent.queue(), Subscriber::Devices);
    for trigger in triggers.values() {
        let filter = trigger["spec"]["filter"]["attributes"]["type"].as_str();
        if let (Some(event_type), Some(subscriber)) = (
            filter.and_then(|f| f.parse::<ktwin_events::EventType>().ok()),
            subscriber_of_trigger(trigger),
        ) {
            table.deliver(event_type, subscriber);
        }
    }
    for binding in objects.iter().filter(|d| d.kind == ChildKind::Binding) {
        let spec = &binding.object["spec"];
        let destination = spec["destination"].as_str().unwrap_or_default();
        if destination == DispatcherKind::Mqtt.queue() {
            let interface = spec["routingKey"]
                .as_str()
                .and_then(|k| k.strip_prefix("ktwin.real."))
                .and_then(|k| k.strip_suffix(".#"));
            if let Some(interface) = interface {
                table.mqtt_ingress.insert(interface.to_owned());
            }
            continue;
        }
        let event_type = spec["arguments"]["type"]
            .as_str()
            .and_then(|t| t.parse::<ktwin_events::EventType>().ok());
        if let (Some(event_type), Some(subscriber)) =
            (event_type, queue_subscribers.get(destination))
        {
            table.deliver(event_type, subscriber.clone());
        }
    }
    table
}
