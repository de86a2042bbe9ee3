//! The local realizer of a plan's routing: one in-memory broker subscription per subscriber,
//! filtering exactly the event types the plan routes to it. The Kubernetes realizer turns the
//! same routes into Triggers and Bindings; both must agree with [`ktwin_planner::routing_table`].

use std::collections::{BTreeMap, BTreeSet};

use ktwin_broker::TypeFilter;
use ktwin_events::EventType;
use ktwin_planner::{Plan, RoutingTable, Subscriber};

/// One broker subscription of the local runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSubscription {
    /// Who consumes it.
    pub subscriber: Subscriber,
    /// Its broker subscription name (`twin/<iface>`, `event-store/<name>`, `devices`).
    pub name: String,
    /// The event types it receives.
    pub event_types: BTreeSet<EventType>,
}

impl LocalSubscription {
    /// The broker filter: exactly the routed types.
    pub fn filter(&self) -> TypeFilter {
        TypeFilter::exact(self.event_types.iter().map(ToString::to_string))
    }
}

/// Every subscription and device ingress the local runtime sets up for a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalRoutes {
    /// Subscriptions, sorted by subscriber.
    pub subscriptions: Vec<LocalSubscription>,
    /// Interfaces whose devices' `ktwin/real/<iface>/#` messages are accepted.
    pub mqtt_ingress: BTreeSet<String>,
}

impl LocalRoutes {
    /// Realizes the routes of `plan`.
    pub fn realize(plan: &Plan) -> Self {
        let mut by_subscriber: BTreeMap<Subscriber, BTreeSet<EventType>> = BTreeMap::new();
        for route in plan.routes() {
            by_subscriber
                .entry(route.subscriber.clone())
                .or_default()
                .insert(route.event_type.clone());
        }
        for command in plan.device_commands() {
            by_subscriber
                .entry(Subscriber::Devices)
                .or_default()
                .insert(command);
        }
        Self {
            subscriptions: by_subscriber
                .into_iter()
                .map(|(subscriber, event_types)| LocalSubscription {
                    name: subscriber.to_string(),
                    subscriber,
                    event_types,
                })
                .collect(),
            mqtt_ingress: plan.mqtt_ingress().map(|i| i.interface.clone()).collect(),
        }
    }

    /// The subscription of `subscriber`, if anything is routed to it.
    pub fn subscription(&self, subscriber: &Subscriber) -> Option<&LocalSubscription> {
        self.subscriptions
            .iter()
            .find(|s| &s.subscriber == subscriber)
    }

    /// What these subscriptions route, in the planner's comparable form: built from the
    /// subscriptions' broker filters, so it describes what the broker will actually do.
    pub fn routing_table(&self) -> RoutingTable {
        let mut table = RoutingTable::default();
        for subscription in &self.subscriptions {
            let filter = subscription.filter();
            for ty in filter.exact_types() {
                if let Ok(event_type) = ty.parse::<EventType>() {
                    table.deliver(event_type, subscription.subscriber.clone());
                }
            }
        }
        table.mqtt_ingress = self.mqtt_ingress.clone();
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktwin_planner::{MqttIngress, Route, RoutePurpose};

    fn route(owner: &str, ty: &str, subscriber: Subscriber) -> Route {
        Route {
            owner: owner.into(),
            purpose: RoutePurpose::Real,
            event_type: ty.parse().unwrap(),
            subscriber,
        }
    }

    fn plan_with(routes: Vec<Route>, ingress: Vec<&str>) -> Plan {
        let mut plan = ktwin_planner::plan(
            &ktwin_planner::PlanInput {
                namespace: "ktwin".into(),
                ..Default::default()
            },
            &ktwin_planner::KtwinConfig::default(),
        )
        .unwrap();
        plan.interfaces.push(ktwin_planner::InterfacePlan {
            interface: "city-pole".into(),
            namespace: "ktwin".into(),
            service: None,
            routes,
            device: None,
            mqtt_ingress: ingress
                .into_iter()
                .map(|i| MqttIngress {
                    owner: "city-pole".into(),
                    purpose: RoutePurpose::Real,
                    interface: i.into(),
                })
                .collect(),
        });
        plan
    }

    #[test]
    fn one_subscription_per_subscriber_with_exactly_its_types() {
        let twin = Subscriber::Twin("city-pole".into());
        let store = Subscriber::EventStore("store".into());
        let plan = plan_with(
            vec![
                route("city-pole", "ktwin.real.city-pole", twin.clone()),
                route("city-pole", "ktwin.command.city-pole.reboot", twin.clone()),
                route("city-pole", "ktwin.real.city-pole", store.clone()),
                route("city-pole", "ktwin.store.city-pole", store.clone()),
                route("city-pole", "ktwin.virtual.city-pole", Subscriber::Devices),
            ],
            vec!["city-pole", "ngsi-ld-city-streetlight"],
        );
        let local = LocalRoutes::realize(&plan);
        assert_eq!(local.subscriptions.len(), 3);
        let pole = local.subscription(&twin).unwrap();
        assert_eq!(pole.name, "twin/city-pole");
        let filter = pole.filter();
        assert!(filter.matches("ktwin.real.city-pole"));
        assert!(filter.matches("ktwin.command.city-pole.reboot"));
        assert!(!filter.matches("ktwin.store.city-pole"));
        assert!(
            !filter.matches("ktwin.real.city-pole-2"),
            "exact, not prefix"
        );
        assert_eq!(
            local.subscription(&Subscriber::Devices).unwrap().name,
            "devices"
        );
        assert_eq!(local.routing_table(), ktwin_planner::routing_table(&plan));
    }
}
