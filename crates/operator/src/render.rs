//! The Kubernetes realizer: renders a plan into Knative Serving/Eventing, RabbitMQ topology and
//! core objects. Pure: what the cluster must tell us (broker address, exchange and queue names
//! created by eventing-rabbitmq) comes in as [`Discovered`]; what is missing is reported, never
//! rendered as an empty string.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ktwin_planner::{
    Autoscaling, DispatcherKind, DispatcherPlan, DispatchersPlan, Endpoint, EnvValue,
    EventStorePlan, GatewayPlan, GraphPlan, InterfacePlan, KtwinConfig, MqttIngress, Plan,
    PlatformEnv, Route, RoutePurpose, ScaleMetric, Subscriber,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::kinds::ChildKind;
use crate::names::{
    LABEL_EVENT_STORE, LABEL_MANAGED_BY, LABEL_OWNER_UID, LABEL_TRIGGER, LABEL_TWIN_INTERFACE,
    MANAGED_BY, MAX_KSERVICE, MAX_LABEL, fit, label_name,
};

/// The seed filter of the event-store trigger: it matches no ktwin event, so the store receives
/// exactly what its bindings route into the trigger's queue.
pub const EVENT_STORE_SEED_TYPE: &str = "ktwin.event-store";
/// Binding argument naming the Binding object, making every broker-side binding unique so
/// deleting one never removes another's identical binding (RabbitMQ ignores `x-` arguments when
/// matching headers).
pub const BINDING_ID_ARGUMENT: &str = "x-ktwin-binding";

/// What only the cluster knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The broker ingress URL (`Broker.status.address.url`).
    pub broker_url: Option<String>,
    /// The broker's headers exchange (`Exchange.spec.name`, labelled with the broker).
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
    fit(interface, MAX_KSERVICE)
}

/// Name of the Trigger feeding an interface's service.
pub fn twin_trigger_name(interface: &str) -> String {
    fit(interface, MAX_LABEL)
}

/// Name of the Knative Service of an event store.
pub fn event_store_service_name(store: &str) -> String {
    fit(store, MAX_KSERVICE)
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
        RoutePurpose::Command(command) => label_name(&[owner, command, "command-dispatcher"]),
        RoutePurpose::AggregateReal(rel) => label_name(&[owner, rel, "real-dispatcher"]),
        RoutePurpose::Virtual => label_name(&[owner, "virtual-cloud-event-dispatcher"]),
        RoutePurpose::AggregateVirtual(rel) => label_name(&[owner, rel, "virtual-dispatcher"]),
        RoutePurpose::PersistReal => label_name(&[owner, "real-event-store"]),
        RoutePurpose::PersistVirtual => label_name(&[owner, "virtual-event-store"]),
        RoutePurpose::Store => label_name(&[owner, "event-store"]),
    }
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
                "amqp://$(KTWIN_AMQP_USERNAME):$(KTWIN_AMQP_PASSWORD)@$(KTWIN_AMQP_HOST):$(KTWIN_AMQP_PORT)/{}",
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

    fn env(&self, env: &[PlatformEnv]) -> Result<Vec<EnvVar>, Missing> {
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
        for e in env {
            match &e.value {
                EnvValue::Literal(value) => out.push(literal(&e.name, value.clone())),
                EnvValue::SecretKey { name, key } => out.push(secret(&e.name, name, key)),
                EnvValue::Endpoint(Endpoint::Amqp) => {
                    let s = &self.config.rabbitmq_secret;
                    for (var, key) in [
                        ("KTWIN_AMQP_USERNAME", &s.username_key),
                        ("KTWIN_AMQP_PASSWORD", &s.password_key),
                        ("KTWIN_AMQP_HOST", &s.host_key),
                        ("KTWIN_AMQP_PORT", &s.port_key),
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

    fn broker_ref(&self) -> Value {
        match &self.config.broker.namespace {
            Some(ns) if ns != self.namespace => json!({"brokerRef": {
                "apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                "name": self.config.broker.name, "namespace": ns}}),
            _ => json!({"broker": self.config.broker.name}),
        }
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
            if let Some(parallelism) = service.autoscaling.parallelism {
                meta["annotations"] =
                    json!({"rabbitmq.eventing.knative.dev/parallelism": parallelism.to_string()});
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

    /// Renders an event store (Knative Service and its Trigger).
    pub fn event_store(&self, plan: &EventStorePlan, owner: &Owner) -> Rendered {
        let mut out = Rendered::default();
        let name = event_store_service_name(&plan.name);
        let labels = [(LABEL_EVENT_STORE, plan.name.as_str())];
        match self.env(&plan.env) {
            Ok(env) => {
                let template = PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "event-store".into(),
                            image: Some(plan.image.clone()),
                            args: Some(plan.args.clone()),
                            resources: plan.resources.clone(),
                            ports: Some(vec![ContainerPort {
                                container_port: i32::from(self.config.service_port),
                                ..Default::default()
                            }]),
                            readiness_probe: Some(http_probe("/ready", self.config.service_port)),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                };
                out.push(
                    ChildKind::KService,
                    json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": self.metadata(&name, owner, &labels),
                        "spec": {"template": knative_template(&template, &plan.autoscaling, &env, &plan.node_selector)}}),
                );
            }
            Err(missing) => out.miss(missing),
        }
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
        spec["subscriber"] = json!({
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name},
            "uri": plan.ingest_path,
        });
        out.push(
            ChildKind::Trigger,
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                   "metadata": meta, "spec": spec}),
        );
        out.finish()
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
            match self.dispatcher_workload(dispatcher, owner) {
                Ok(objects) => out.extend(objects),
                Err(missing) => out.miss(missing),
            }
        }
        out.finish()
    }

    fn dispatcher_workload(
        &self,
        dispatcher: &DispatcherPlan,
        owner: &Owner,
    ) -> Result<Rendered, Missing> {
        let env = self.env(&dispatcher.env)?;
        Ok(self.workload(
            &dispatcher.name,
            owner,
            &dispatcher.image,
            &dispatcher.args,
            dispatcher.replicas,
            dispatcher.resources.clone(),
            env,
            &dispatcher.node_selector,
            "ClusterIP",
            self.config.service_port,
        ))
    }

    /// A Deployment plus a Service in front of its HTTP port (health and metrics), both
    /// labelled `ktwin/trigger=<name>` as the original's ServiceMonitor expects.
    #[allow(clippy::too_many_arguments)]
    fn workload(
        &self,
        name: &str,
        owner: &Owner,
        image: &str,
        args: &[String],
        replicas: u32,
        resources: Option<ResourceRequirements>,
        env: Vec<EnvVar>,
        node_selector: &BTreeMap<String, String>,
        service_type: &str,
        port: u16,
    ) -> Rendered {
        let mut out = Rendered::default();
        let selector: BTreeMap<String, String> =
            [(LABEL_TRIGGER.to_owned(), name.to_owned())].into();
        let meta: ObjectMeta =
            serde_json::from_value(self.metadata(name, owner, &[(LABEL_TRIGGER, name)]))
                .unwrap_or_default();
        let deployment = Deployment {
            metadata: meta.clone(),
            spec: DeploymentSpec {
                replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(selector.clone()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: name.to_owned(),
                            image: Some(image.to_owned()),
                            args: Some(args.to_vec()),
                            env: Some(env),
                            ports: Some(vec![ContainerPort {
                                name: Some("http".into()),
                                container_port: i32::from(port),
                                ..Default::default()
                            }]),
                            resources,
                            liveness_probe: Some(http_probe("/health", port)),
                            readiness_probe: Some(http_probe("/ready", port)),
                            security_context: Some(restricted_container()),
                            ..Default::default()
                        }],
                        node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
            status: None,
        };
        out.push(ChildKind::Deployment, typed_object(&deployment));
        let service = Service {
            metadata: meta,
            spec: Some(ServiceSpec {
                type_: Some(service_type.to_owned()),
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
        };
        out.push(ChildKind::Service, typed_object(&service));
        out
    }

    /// Renders a gateway (Deployment and Service).
    pub fn gateway(&self, plan: &GatewayPlan, owner: &Owner) -> Rendered {
        match self.env(&plan.env) {
            Ok(env) => self
                .workload(
                    &plan.name,
                    owner,
                    &plan.image,
                    &plan.args,
                    plan.replicas,
                    plan.resources.clone(),
                    env,
                    &BTreeMap::new(),
                    &plan.service_type,
                    plan.port,
                )
                .finish(),
            Err(missing) => Rendered {
                objects: Vec::new(),
                missing: vec![missing],
            },
        }
    }

    /// Renders the twin graph service (part of the install bundle, owned by nobody).
    pub fn graph(&self, plan: &GraphPlan) -> Rendered {
        let owner = Owner {
            api_version: String::new(),
            kind: String::new(),
            name: String::new(),
            uid: None,
        };
        let mut out = self.workload(
            &plan.name,
            &owner,
            &plan.image,
            &plan.args,
            1,
            None,
            vec![
                EnvVar {
                    name: ktwin_events::env::GRAPH_SOURCE.into(),
                    value: Some("kubernetes".into()),
                    value_from: None,
                },
                EnvVar {
                    name: ktwin_events::env::NAMESPACE.into(),
                    value: Some(plan.namespace.clone()),
                    value_from: None,
                },
            ],
            &BTreeMap::new(),
            "ClusterIP",
            plan.port,
        );
        // Services are reached on port 80 like Knative services; the pod listens on `port`.
        for object in &mut out.objects {
            match object.kind {
                ChildKind::Service => object.object["spec"]["ports"][0]["port"] = json!(80),
                ChildKind::Deployment => {
                    object.object["spec"]["template"]["spec"]["serviceAccountName"] =
                        json!(plan.name);
                }
                _ => {}
            }
        }
        out.finish()
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

fn restricted_container() -> k8s_openapi::api::core::v1::SecurityContext {
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
            parallelism.to_string(),
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
