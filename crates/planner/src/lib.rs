//! The ktwin planner: from the twin model (TwinInterfaces, TwinInstances, EventStore,
//! MQTTTrigger, Gateway) and a [`KtwinConfig`], the desired platform state — twin services,
//! the event store, the dispatchers, the graph service and every event route.
//!
//! One plan, two realizers: the Kubernetes operator renders a [`Plan`] into Knative and RabbitMQ
//! objects, and the local runtime routes events in memory from the same plan. Both must route the
//! same event types to the same subscribers, which [`routing_table`] makes checkable.
//!
//! It is pure (no I/O) and must not know about Kubernetes object shapes, RabbitMQ bindings or any
//! transport: those belong to the realizers.
//!
//! ```
//! use ktwin_planner::{KtwinConfig, PlanInput, plan, routing_table};
//!
//! let input = PlanInput { namespace: "ktwin".into(), ..Default::default() };
//! let plan = plan(&input, &KtwinConfig::default()).unwrap();
//! assert!(routing_table(&plan).deliveries.is_empty());
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod build;
mod components;
mod config;
mod input;
mod interface;
mod plan;
mod routing;
mod world;

pub use build::plan;
pub use components::EMBEDDED_STORE_PATH;
pub use config::{
    ApiTokenSecret, ComponentArgs, DEFAULT_IMAGE, Images, KtwinConfig, NodeSelectors, ObjectRef,
    RabbitmqSecret,
};
pub use input::{PlanInput, name_of};
pub use interface::{autoscaling_from_model, plan_interface};
pub use plan::{
    Autoscaling, Diagnostic, DispatcherKind, DispatcherPlan, DispatchersPlan, Endpoint, EnvValue,
    EventStorePlan, GATEWAY_TLS_DIR, GatewayPlan, GraphPlan, InterfacePlan, MqttIngress, Plan,
    PlatformEnv, Route, RoutePurpose, ScaleMetric, StoreStorage, Subscriber, TwinService,
};
pub use routing::{RoutingTable, routing_table};
pub use world::{PlanError, World};
