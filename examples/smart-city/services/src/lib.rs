//! The smart-city twin services of the KTWIN paper, rewritten on `ktwin-sdk`: one module of
//! domain logic per service (pure functions, tested with hand-computed values) plus the
//! handler that wires it to events; `src/bin/` holds one small binary per service.
//!
//! Each module's doc comment says which defects of the original Go service are fixed. The
//! interface, relationship and command names are those of the smart-city example
//! (`examples/smart-city`), kept in [`names`].
//!
//! This crate knows the smart-city domain only; transport, storage and the graph are the SDK's.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod air_quality;
pub mod aqi;
pub mod device;
pub mod ev_charging;
pub mod flow;
pub mod neighborhood;
pub mod parking;
pub mod pole;
pub mod streetlight;
pub mod weather;

use std::process::ExitCode;
use std::sync::Arc;

use ktwin_sdk::{HandlerError, TwinEvent, TwinHandler};
use serde_json::{Map, Value};

/// Names of the smart-city model the services depend on.
pub mod names {
    /// Air-quality observations of a pole's sensor.
    pub const AIR_QUALITY: &str = "ngsi-ld-city-airqualityobserved";
    /// A city pole.
    pub const POLE: &str = "city-pole";
    /// A neighborhood.
    pub const NEIGHBORHOOD: &str = "s4city-city-neighborhood";
    /// Crowd-flow observations.
    pub const CROWD_FLOW: &str = "ngsi-ld-city-crowdflowobserved";
    /// Traffic-flow observations.
    pub const TRAFFIC_FLOW: &str = "ngsi-ld-city-trafficflowobserved";
    /// Weather observations.
    pub const WEATHER: &str = "ngsi-ld-city-weatherobserved";
    /// A streetlight.
    pub const STREETLIGHT: &str = "ngsi-ld-city-streetlight";
    /// A sensor device (battery, measurement frequency).
    pub const DEVICE: &str = "ngsi-ld-city-device";
    /// A parking spot.
    pub const PARKING_SPOT: &str = "ngsi-ld-city-parkingspot";
    /// An off-street parking.
    pub const OFF_STREET_PARKING: &str = "ngsi-ld-city-offstreetparking";
    /// An on-street parking.
    pub const ON_STREET_PARKING: &str = "ngsi-ld-city-onstreetparking";
    /// An EV charging station.
    pub const EV_CHARGING: &str = "ngsi-ld-city-evchargingstation";

    /// Relationship from an air-quality observation to its pole.
    pub const REL_POLE: &str = "citypole";
    /// Relationship from a pole to its neighborhood.
    pub const REL_NEIGHBORHOOD: &str = "refNeighborhood";
    /// Relationship from a parking spot to its off-street parking.
    pub const REL_OFF_STREET_PARKING: &str = "refOffStreetParking";
    /// Relationship from a parking spot to its on-street parking.
    pub const REL_ON_STREET_PARKING: &str = "refOnStreetParking";

    /// Command carrying an AQI level (pole and neighborhood).
    pub const CMD_UPDATE_AQI: &str = "updateairqualityindex";
    /// Command carrying vehicle entrances/exits (parkings).
    pub const CMD_UPDATE_VEHICLE_COUNT: &str = "updatevehiclecount";
}

/// Prefix of the handler names under which [`handlers`] registers the services.
pub const HANDLER_PREFIX: &str = "smart-city/";

/// Every service as an in-process handler, named `smart-city/<binary>` (the name of its
/// binary in `src/bin/`), as a project's `handler:` setting refers to it.
pub fn handlers() -> Vec<(String, Arc<dyn TwinHandler>)> {
    let all: Vec<(&str, Arc<dyn TwinHandler>)> = vec![
        (
            "air-quality-observed",
            Arc::new(air_quality::AirQualityService),
        ),
        ("pole", Arc::new(pole::PoleService)),
        (
            "neighborhood",
            Arc::new(neighborhood::NeighborhoodService::default()),
        ),
        ("crowd-flow-observed", Arc::new(flow::FlowService::crowd())),
        (
            "traffic-flow-observed",
            Arc::new(flow::FlowService::traffic()),
        ),
        (
            "weather-observed",
            Arc::new(weather::WeatherService::default()),
        ),
        (
            "streetlight",
            Arc::new(streetlight::StreetlightService::default()),
        ),
        ("device", Arc::new(device::DeviceService)),
        (
            "parking-spot",
            Arc::new(parking::ParkingSpotService::default()),
        ),
        (
            "off-street-parking",
            Arc::new(parking::ParkingService::off_street()),
        ),
        (
            "on-street-parking",
            Arc::new(parking::ParkingService::on_street()),
        ),
        (
            "ev-charging-station",
            Arc::new(ev_charging::EvChargingService::default()),
        ),
    ];
    all.into_iter()
        .map(|(name, handler)| (format!("{HANDLER_PREFIX}{name}"), handler))
        .collect()
}

/// Runs `handler` as a twin service (the Knative contract), exiting non-zero on failure.
pub async fn run(handler: impl TwinHandler) -> ExitCode {
    match ktwin_sdk::serve(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The event's data as a JSON object, to be stored enriched with computed fields (every field
/// the device sent is kept, including ones the service does not know).
pub(crate) fn data_object(event: &TwinEvent) -> Result<Map<String, Value>, HandlerError> {
    match event.json()? {
        Value::Object(object) => Ok(object),
        Value::Null => Ok(Map::new()),
        other => Err(HandlerError::Invalid(format!(
            "event {} ({}): data must be a JSON object, got {other}",
            event.id(),
            event.event_type()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_binary_has_a_handler_of_the_same_name() {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
        let mut binaries: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                format!("{}{}", super::HANDLER_PREFIX, name.trim_end_matches(".rs"))
            })
            .collect();
        binaries.sort();
        let mut handlers: Vec<String> = super::handlers().into_iter().map(|(n, _)| n).collect();
        handlers.sort();
        assert_eq!(handlers, binaries);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Events and contexts for the services' unit tests.

    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use ktwin_sdk::cloudevents::{AttributesReader, Event, EventBuilder as _, EventBuilderV10};
    use ktwin_sdk::{MemoryStates, StaticGraph, TwinContext, TwinEvent};

    /// A received event of `ty` from `source` with JSON `data`.
    pub fn event(ty: &str, source: &str, data: serde_json::Value) -> TwinEvent {
        let event = EventBuilderV10::new()
            .id(format!("{ty}/{source}/{data}"))
            .ty(ty)
            .source(source)
            .data("application/json", data)
            .build()
            .unwrap();
        TwinEvent::new(event).unwrap()
    }

    /// A context over `graph` (JSON) and `states`, frozen at `now`.
    pub fn context(graph: &str, states: Arc<MemoryStates>, now: DateTime<Utc>) -> TwinContext {
        TwinContext::in_memory(StaticGraph::from_json(graph).unwrap(), states).at(now)
    }

    /// `2024-05-20T10:00:00Z` plus `minutes`.
    pub fn at(minutes: i64) -> DateTime<Utc> {
        "2024-05-20T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    /// (type, source, data) of an emitted event.
    pub fn summary(event: &Event) -> (String, String, serde_json::Value) {
        let data = match event.data() {
            Some(ktwin_sdk::cloudevents::Data::Json(v)) => v.clone(),
            other => panic!("expected JSON data, got {other:?}"),
        };
        (event.ty().to_owned(), event.source().to_string(), data)
    }
}
