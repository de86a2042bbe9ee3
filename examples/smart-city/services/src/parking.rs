//! Parking-spot service and parking service (off-street and on-street).
//!
//! The spot service turns spot **transitions** into `updatevehiclecount` commands to the
//! spot's parking (`refOffStreetParking`, else `refOnStreetParking`): free → occupied is an
//! entrance, occupied → free an exit; repeated reports of the same status change nothing. The
//! parking service keeps `occupiedSpotNumber` within `[0, totalSpotNumber]` (50 spots when
//! unknown, as the original) and stores it with `availableSpotNumber` and `occupancy`.
//!
//! Fixed from the original: every `occupied` report counted an entrance and every `free` an
//! exit, so periodic reports (every 2–80 s) drove the counter to 0 or to the total; on-street
//! spots have no `refOffStreetParking` and failed with 500 forever; the counter was a
//! read-modify-write through the event store and lost updates when commands raced or the
//! previous write was still queued — both the spot's last status and the parking's counter
//! are now owned by their service and updated one event at a time per instance, and a
//! redelivered event is not applied twice.

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler, async_trait,
    command_event, store_event,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data_object;
use crate::names::{
    CMD_UPDATE_VEHICLE_COUNT, OFF_STREET_PARKING, ON_STREET_PARKING, PARKING_SPOT,
    REL_OFF_STREET_PARKING, REL_ON_STREET_PARKING,
};

/// Capacity assumed for a parking whose state does not say.
pub const DEFAULT_TOTAL_SPOTS: u32 = 50;

/// Payload of `updatevehiclecount`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateVehicleCount {
    /// Vehicles that entered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vehicle_entrance_count: u32,
    /// Vehicles that left.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vehicle_exit_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The stored status of a spot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpotState {
    /// `occupied`, `free`, `closed` or `unknown`.
    pub status: Option<String>,
}

/// The vehicle movement implied by a spot going from `previous` to `current`.
pub fn spot_transition(previous: Option<&str>, current: &str) -> Option<UpdateVehicleCount> {
    let was_occupied = previous == Some("occupied");
    match (was_occupied, current) {
        (false, "occupied") => Some(UpdateVehicleCount {
            vehicle_entrance_count: 1,
            vehicle_exit_count: 0,
        }),
        (true, "free") => Some(UpdateVehicleCount {
            vehicle_entrance_count: 0,
            vehicle_exit_count: 1,
        }),
        _ => None,
    }
}

/// The parking-spot service; it owns each spot's last status.
#[derive(Default)]
pub struct ParkingSpotService {
    spots: OwnedStates<SpotState>,
}

#[async_trait]
impl TwinHandler for ParkingSpotService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(PARKING_SPOT).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: SpotState = event.data()?;
        let Some(status) = reading.status.clone() else {
            return Ok(vec![store_event(
                PARKING_SPOT,
                event.instance(),
                Value::Object(data_object(event)?),
            )?]);
        };
        let movement = self
            .spots
            .update(
                ctx,
                PARKING_SPOT,
                event.instance(),
                event.id(),
                |previous| {
                    let movement =
                        spot_transition(previous.and_then(|p| p.status).as_deref(), &status);
                    Ok((reading.clone(), movement))
                },
            )
            .await?;
        let mut out = vec![store_event(
            PARKING_SPOT,
            event.instance(),
            Value::Object(data_object(event)?),
        )?];
        if let Some(movement) = movement {
            let parking = ctx
                .find_relationship(
                    PARKING_SPOT,
                    event.instance(),
                    &[REL_OFF_STREET_PARKING, REL_ON_STREET_PARKING],
                )
                .await?;
            match parking {
                Some(parking) => out.push(command_event(
                    &parking.interface,
                    CMD_UPDATE_VEHICLE_COUNT,
                    &parking.instance,
                    movement,
                )?),
                None => tracing::warn!(
                    spot = event.instance(),
                    "parking spot belongs to no parking; movement not counted"
                ),
            }
        }
        Ok(out)
    }
}

/// The stored occupancy of a parking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkingOccupancy {
    /// Occupied spots.
    #[serde(default)]
    pub occupied_spot_number: u32,
    /// Spots in total.
    #[serde(default = "default_total")]
    pub total_spot_number: u32,
}

fn default_total() -> u32 {
    DEFAULT_TOTAL_SPOTS
}

impl ParkingOccupancy {
    /// The occupancy after `update`, kept within `[0, total]`.
    pub fn apply(self, update: UpdateVehicleCount) -> Self {
        let occupied = (i64::from(self.occupied_spot_number)
            + i64::from(update.vehicle_entrance_count)
            - i64::from(update.vehicle_exit_count))
        .clamp(0, i64::from(self.total_spot_number));
        Self {
            occupied_spot_number: u32::try_from(occupied).expect("clamped to a u32 range"),
            ..self
        }
    }

    /// The stored form, with the derived `availableSpotNumber` and `occupancy` (fraction).
    pub fn to_json(self) -> Value {
        let occupancy = if self.total_spot_number == 0 {
            0.0
        } else {
            f64::from(self.occupied_spot_number) / f64::from(self.total_spot_number)
        };
        json!({
            "occupiedSpotNumber": self.occupied_spot_number,
            "totalSpotNumber": self.total_spot_number,
            "availableSpotNumber": self.total_spot_number - self.occupied_spot_number,
            "occupancy": occupancy,
        })
    }
}

/// The parking service of one parking interface; it owns each parking's occupancy.
pub struct ParkingService {
    interface: &'static str,
    parkings: OwnedStates<ParkingOccupancy>,
}

impl ParkingService {
    /// Off-street parkings.
    pub fn off_street() -> Self {
        Self {
            interface: OFF_STREET_PARKING,
            parkings: OwnedStates::new(),
        }
    }

    /// On-street parkings.
    pub fn on_street() -> Self {
        Self {
            interface: ON_STREET_PARKING,
            parkings: OwnedStates::new(),
        }
    }
}

#[async_trait]
impl TwinHandler for ParkingService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::command(self.interface, CMD_UPDATE_VEHICLE_COUNT).expect("valid names")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let update: UpdateVehicleCount = event.data()?;
        if update == UpdateVehicleCount::default() {
            return Ok(Vec::new());
        }
        let occupancy = self
            .parkings
            .update(
                ctx,
                self.interface,
                event.instance(),
                event.id(),
                |previous| {
                    let next = previous
                        .unwrap_or(ParkingOccupancy {
                            occupied_spot_number: 0,
                            total_spot_number: DEFAULT_TOTAL_SPOTS,
                        })
                        .apply(update);
                    Ok((next, next))
                },
            )
            .await?;
        Ok(vec![store_event(
            self.interface,
            event.instance(),
            occupancy.to_json(),
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use std::sync::Arc;

    const GRAPH: &str = r#"{"twinInstances":[
        {"name":"ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001","interface":"ngsi-ld-city-parkingspot",
         "relationships":[{"name":"refOffStreetParking","interface":"ngsi-ld-city-offstreetparking","instance":"ngsi-ld-city-offstreetparking-nb001-ofp0001"}]},
        {"name":"ngsi-ld-city-onstreetparkingspot-nb001-onp0001-s0001","interface":"ngsi-ld-city-parkingspot",
         "relationships":[{"name":"refOnStreetParking","interface":"ngsi-ld-city-onstreetparking","instance":"ngsi-ld-city-onstreetparking-nb001-onp0001"}]}]}"#;

    #[test]
    fn transitions_not_reports_move_vehicles() {
        let entrance = UpdateVehicleCount {
            vehicle_entrance_count: 1,
            vehicle_exit_count: 0,
        };
        let exit = UpdateVehicleCount {
            vehicle_entrance_count: 0,
            vehicle_exit_count: 1,
        };
        assert_eq!(spot_transition(None, "occupied"), Some(entrance));
        assert_eq!(spot_transition(Some("free"), "occupied"), Some(entrance));
        assert_eq!(spot_transition(Some("occupied"), "occupied"), None);
        assert_eq!(spot_transition(Some("occupied"), "free"), Some(exit));
        assert_eq!(spot_transition(Some("occupied"), "closed"), None);
        assert_eq!(spot_transition(None, "free"), None);
    }

    #[test]
    fn occupancy_stays_within_bounds() {
        let p = ParkingOccupancy {
            occupied_spot_number: 49,
            total_spot_number: 50,
        };
        let two_in = UpdateVehicleCount {
            vehicle_entrance_count: 2,
            vehicle_exit_count: 0,
        };
        assert_eq!(p.apply(two_in).occupied_spot_number, 50);
        let out = UpdateVehicleCount {
            vehicle_entrance_count: 0,
            vehicle_exit_count: 3,
        };
        let empty = ParkingOccupancy {
            occupied_spot_number: 1,
            total_spot_number: 50,
        };
        assert_eq!(empty.apply(out).occupied_spot_number, 0);
        assert_eq!(
            ParkingOccupancy {
                occupied_spot_number: 3,
                total_spot_number: 50
            }
            .apply(two_in)
            .to_json(),
            json!({"occupiedSpotNumber": 5, "totalSpotNumber": 50, "availableSpotNumber": 45, "occupancy": 0.1})
        );
    }

    #[tokio::test]
    async fn spot_reports_drive_the_right_parking() {
        let ctx = context(GRAPH, Arc::new(ktwin_sdk::MemoryStates::new()), at(0));
        let spots = ParkingSpotService::default();
        let off = "ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001";
        let on = "ngsi-ld-city-onstreetparkingspot-nb001-onp0001-s0001";
        let mut commands = Vec::new();
        for (i, (spot, status)) in [
            (off, "occupied"),
            (off, "occupied"),
            (off, "free"),
            (on, "occupied"),
        ]
        .into_iter()
        .enumerate()
        {
            let ev = event(
                "ktwin.real.ngsi-ld-city-parkingspot",
                spot,
                json!({"status": status, "msg_count": i}),
            );
            let out: Vec<_> = spots
                .handle(&ev, &ctx)
                .await
                .unwrap()
                .iter()
                .map(summary)
                .collect();
            assert_eq!(out[0].0, "ktwin.store.ngsi-ld-city-parkingspot");
            commands.extend(out.into_iter().skip(1));
        }
        assert_eq!(
            commands,
            vec![
                (
                    "ktwin.command.ngsi-ld-city-offstreetparking.updatevehiclecount".to_owned(),
                    "ngsi-ld-city-offstreetparking-nb001-ofp0001".to_owned(),
                    json!({"vehicleEntranceCount": 1})
                ),
                (
                    "ktwin.command.ngsi-ld-city-offstreetparking.updatevehiclecount".to_owned(),
                    "ngsi-ld-city-offstreetparking-nb001-ofp0001".to_owned(),
                    json!({"vehicleExitCount": 1})
                ),
                (
                    "ktwin.command.ngsi-ld-city-onstreetparking.updatevehiclecount".to_owned(),
                    "ngsi-ld-city-onstreetparking-nb001-onp0001".to_owned(),
                    json!({"vehicleEntranceCount": 1})
                ),
            ]
        );
    }

    #[tokio::test]
    async fn parking_counts_from_its_stored_state_without_losing_updates() {
        let states = Arc::new(ktwin_sdk::MemoryStates::new());
        let parking = "ngsi-ld-city-offstreetparking-nb001-ofp0001";
        states.put(
            store_event(
                OFF_STREET_PARKING,
                parking,
                json!({"occupiedSpotNumber": 3, "totalSpotNumber": 50}),
            )
            .unwrap(),
        );
        let ctx = context(GRAPH, states, at(0));
        let service = ParkingService::off_street();
        let ty = "ktwin.command.ngsi-ld-city-offstreetparking.updatevehiclecount";
        let mut last = Value::Null;
        // Five entrances, one exit; the store is never updated in between (writes are queued).
        for (i, data) in std::iter::repeat_n(json!({"vehicleEntranceCount": 1}), 5)
            .chain([json!({"VehicleExitCount": 1}), json!({})])
            .enumerate()
        {
            let mut ev_data = data.clone();
            ev_data["n"] = json!(i);
            let out = service
                .handle(&event(ty, parking, ev_data), &ctx)
                .await
                .unwrap();
            if let Some(stored) = out.first() {
                last = summary(stored).2;
            }
        }
        assert_eq!(last["occupiedSpotNumber"], 7);
        assert_eq!(last["availableSpotNumber"], 43);
    }
}
