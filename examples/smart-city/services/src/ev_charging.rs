//! EV charging station service: derives the NGSI-LD `status` of a station from its
//! `availableCapacity` (free charging points) and `capacity`, and stores the reading with it.
//!
//! With the occupied share `u = (capacity − available) / capacity`: `empty` at 0, `full` at 1,
//! `almostFull` from 0.9, `almostEmpty` up to 0.1, `working` in between. Without a known
//! capacity the status is `full` when nothing is available, `working` otherwise. The capacity
//! comes from the reading or, when it is absent, from the station's last known state.
//!
//! The original had no service for this interface: readings were only stored, never
//! interpreted. An available capacity above the capacity is rejected (400) rather than stored.

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler, async_trait,
    store_event,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data_object;
use crate::names::EV_CHARGING;

/// The capacity figures of a station.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Charging points in total.
    pub capacity: Option<u32>,
    /// Free charging points.
    pub available_capacity: Option<u32>,
}

/// The status for `available` free points out of `capacity`.
pub fn status(available: u32, capacity: Option<u32>) -> Result<&'static str, String> {
    let Some(capacity) = capacity.filter(|&c| c > 0) else {
        return Ok(if available == 0 { "full" } else { "working" });
    };
    if available > capacity {
        return Err(format!(
            "availableCapacity {available} exceeds capacity {capacity}"
        ));
    }
    // Integer comparisons: the 10 % and 90 % edges are exact.
    let used = capacity - available;
    Ok(if used == 0 {
        "empty"
    } else if available == 0 {
        "full"
    } else if used * 10 >= capacity * 9 {
        "almostFull"
    } else if used * 10 <= capacity {
        "almostEmpty"
    } else {
        "working"
    })
}

/// The service; it remembers each station's capacity.
#[derive(Default)]
pub struct EvChargingService {
    stations: OwnedStates<Capacity>,
}

#[async_trait]
impl TwinHandler for EvChargingService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(EV_CHARGING).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: Capacity = event.data()?;
        let mut data = data_object(event)?;
        if let Some(available) = reading.available_capacity {
            let capacity = self
                .stations
                .update(ctx, EV_CHARGING, event.instance(), event.id(), |previous| {
                    let capacity = reading.capacity.or(previous.and_then(|p| p.capacity));
                    Ok((
                        Capacity {
                            capacity,
                            available_capacity: Some(available),
                        },
                        capacity,
                    ))
                })
                .await?;
            let status = status(available, capacity).map_err(|reason| {
                HandlerError::Invalid(format!("event {}: {reason}", event.id()))
            })?;
            data.insert("status".into(), json!(status));
            if let Some(capacity) = capacity {
                data.insert("capacity".into(), json!(capacity));
            }
        }
        Ok(vec![store_event(
            EV_CHARGING,
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
    fn statuses() {
        assert_eq!(status(10, Some(10)), Ok("empty"));
        assert_eq!(status(9, Some(10)), Ok("almostEmpty")); // 10 % used
        assert_eq!(status(5, Some(10)), Ok("working"));
        assert_eq!(status(1, Some(10)), Ok("almostFull")); // 90 % used
        assert_eq!(status(0, Some(10)), Ok("full"));
        assert_eq!(status(0, None), Ok("full"));
        assert_eq!(status(3, None), Ok("working"));
        assert!(status(11, Some(10)).unwrap_err().contains("exceeds"));
    }

    #[tokio::test]
    async fn capacity_comes_from_the_stored_state_when_absent() {
        let states = Arc::new(ktwin_sdk::MemoryStates::new());
        states.put(store_event(EV_CHARGING, "ev-1", json!({"capacity": 4})).unwrap());
        let ctx = context(r#"{"twinInstances":[]}"#, states, at(0));
        let service = EvChargingService::default();
        // The paper's device: availableCapacity 1 in windows 0–4, 3 in window 5.
        let mut statuses = Vec::new();
        for available in [1, 3] {
            let ev = event(
                "ktwin.real.ngsi-ld-city-evchargingstation",
                "ev-1",
                json!({"AvailableCapacity": available}),
            );
            let (_, _, data) = summary(&service.handle(&ev, &ctx).await.unwrap()[0]);
            assert_eq!(data["capacity"], 4);
            statuses.push(data["status"].clone());
        }
        // 3 of 4 used = 75 % → working; 1 of 4 used = 25 % → working.
        assert_eq!(statuses, vec![json!("working"), json!("working")]);
        let ev = event(
            "ktwin.real.ngsi-ld-city-evchargingstation",
            "ev-1",
            json!({"availableCapacity": 0, "capacity": 2}),
        );
        assert_eq!(
            summary(&service.handle(&ev, &ctx).await.unwrap()[0]).2["status"],
            "full"
        );
    }
}
