//! Crowd-flow and traffic-flow services: decide whether the observed flow is congested and
//! store the observation with `congested`.
//!
//! Crowd: congested when `averageCrowdSpeed < 4` (km/h) or `averageHeadwayTime < 2` (s).
//! Traffic: congested when `averageVehicleSpeed < 12` (km/h) or `averageHeadwayTime < 2` (s).
//!
//! Fixed from the original: absent measurements decoded as 0 and made every flow without
//! them "congested"; only measured values count now, and an observation with neither value
//! leaves `congested` unset. The crowd model declared `occupancy` as a boolean, so the NGSI-LD
//! numeric occupancy (a fraction) failed to decode and the event was retried forever; fields
//! the rule does not use are no longer decoded, only passed through.

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait, store_event,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data_object;
use crate::names::{CROWD_FLOW, TRAFFIC_FLOW};

/// The congestion rule of one kind of flow.
#[derive(Debug, Clone, Copy)]
pub struct CongestionRule {
    /// Interface of the observations.
    pub interface: &'static str,
    /// Below this average speed (km/h) the flow is congested.
    pub min_speed: f64,
    /// Below this average headway (s) the flow is congested.
    pub min_headway: f64,
}

/// Pedestrians.
pub const CROWD: CongestionRule = CongestionRule {
    interface: CROWD_FLOW,
    min_speed: 4.0,
    min_headway: 2.0,
};

/// Vehicles.
pub const TRAFFIC: CongestionRule = CongestionRule {
    interface: TRAFFIC_FLOW,
    min_speed: 12.0,
    min_headway: 2.0,
};

/// The measurements the rule reads (crowd and traffic use different speed names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowReading {
    /// Crowd speed, km/h.
    pub average_crowd_speed: Option<f64>,
    /// Vehicle speed, km/h.
    pub average_vehicle_speed: Option<f64>,
    /// Headway, s.
    pub average_headway_time: Option<f64>,
}

impl CongestionRule {
    /// Whether the flow is congested; `None` when neither speed nor headway was measured.
    pub fn congested(&self, speed: Option<f64>, headway: Option<f64>) -> Option<bool> {
        let slow = speed.map(|s| s < self.min_speed);
        let dense = headway.map(|h| h < self.min_headway);
        match (slow, dense) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        }
    }

    fn speed(&self, reading: &FlowReading) -> Option<f64> {
        if self.interface == CROWD_FLOW {
            reading.average_crowd_speed
        } else {
            reading.average_vehicle_speed
        }
    }
}

/// A flow service for one rule.
#[derive(Debug)]
pub struct FlowService {
    rule: CongestionRule,
}

impl FlowService {
    /// The crowd-flow service.
    pub fn crowd() -> Self {
        Self { rule: CROWD }
    }

    /// The traffic-flow service.
    pub fn traffic() -> Self {
        Self { rule: TRAFFIC }
    }
}

#[async_trait]
impl TwinHandler for FlowService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(self.rule.interface).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        _ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: FlowReading = event.data()?;
        let mut data = data_object(event)?;
        if let Some(congested) = self
            .rule
            .congested(self.rule.speed(&reading), reading.average_headway_time)
        {
            data.insert("congested".into(), json!(congested));
        }
        Ok(vec![store_event(
            self.rule.interface,
            event.instance(),
            Value::Object(data),
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use std::sync::Arc;

    #[test]
    fn rules() {
        assert_eq!(CROWD.congested(Some(2.0), Some(6.0)), Some(true));
        assert_eq!(CROWD.congested(Some(8.0), Some(1.0)), Some(true));
        assert_eq!(CROWD.congested(Some(8.0), Some(6.0)), Some(false));
        assert_eq!(
            CROWD.congested(Some(4.0), Some(2.0)),
            Some(false),
            "thresholds are strict"
        );
        assert_eq!(
            CROWD.congested(Some(8.0), None),
            Some(false),
            "absent headway is not 0"
        );
        assert_eq!(CROWD.congested(None, None), None);
        assert_eq!(TRAFFIC.congested(Some(10.0), Some(5.0)), Some(true));
        assert_eq!(TRAFFIC.congested(Some(50.0), Some(5.0)), Some(false));
    }

    async fn stored(service: FlowService, ty: &str, data: Value) -> Value {
        let ctx = context(
            r#"{"twinInstances":[]}"#,
            Arc::new(ktwin_sdk::MemoryStates::new()),
            at(0),
        );
        let out = service
            .handle(&event(ty, "flow-1", data), &ctx)
            .await
            .unwrap();
        assert_eq!(out.len(), 1);
        summary(&out[0]).2
    }

    #[tokio::test]
    async fn device_readings_are_stored_with_congestion() {
        // Window-5 crowd reading of the paper's device: speed 8, headway 6, 5 people.
        let data = stored(
            FlowService::crowd(),
            "ktwin.real.ngsi-ld-city-crowdflowobserved",
            json!({"averageCrowdSpeed": 8, "averageHeadwayTime": 6, "peopleCount": 5, "occupancy": 0.4}),
        )
        .await;
        assert_eq!(data["congested"], false);
        assert_eq!(data["occupancy"], 0.4);
        let data = stored(
            FlowService::traffic(),
            "ktwin.real.ngsi-ld-city-trafficflowobserved",
            json!({"AverageVehicleSpeed": 10, "averageHeadwayTime": 1}),
        )
        .await;
        assert_eq!(data["congested"], true);
        let data = stored(
            FlowService::traffic(),
            "ktwin.real.ngsi-ld-city-trafficflowobserved",
            json!({"intensity": 3}),
        )
        .await;
        assert!(data.get("congested").is_none());
    }
}
