//! Device service: battery-driven measurement frequency. A device below 15 % battery should
//! report every 60 s, otherwise every 15 s; when the device reports a different
//! `measurementFrequency`, a virtual event tells it the new one (over MQTT,
//! `ktwin/virtual/ngsi-ld-city-device/<instance>`). The reading is stored with the frequency
//! and `dateObserved`.
//!
//! Fixed from the original: a battery level of exactly 15 left the frequency unchanged and 0
//! (an empty battery) was ignored as "absent"; the virtual event was re-sent on every reading
//! even when the device already used the right frequency; it carried the whole device JSON
//! instead of the setting. `batteryLevel` is accepted as a number or a numeric string (the
//! model declares a string, devices send numbers).

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait, store_event,
    virtual_event,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::data_object;
use crate::names::DEVICE;

/// Below this battery level (%) the device saves power.
pub const LOW_BATTERY: f64 = 15.0;
/// Measurement period (s) with enough battery.
pub const NORMAL_PERIOD_S: u32 = 15;
/// Measurement period (s) on low battery.
pub const SAVING_PERIOD_S: u32 = 60;

/// The measurement period a device with `battery_level` % should use.
pub fn measurement_frequency(battery_level: f64) -> u32 {
    if battery_level < LOW_BATTERY {
        SAVING_PERIOD_S
    } else {
        NORMAL_PERIOD_S
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("batteryLevel {s:?}: expected a number"))
        }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "batteryLevel {other}: expected a number"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceReading {
    #[serde(default, deserialize_with = "number_or_string")]
    battery_level: Option<f64>,
    measurement_frequency: Option<f64>,
}

/// The service.
#[derive(Debug, Default)]
pub struct DeviceService;

#[async_trait]
impl TwinHandler for DeviceService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(DEVICE).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: DeviceReading = event.data()?;
        let mut data = data_object(event)?;
        data.insert("dateObserved".into(), json!(ctx.now()));
        let mut out = Vec::with_capacity(2);
        if let Some(level) = reading.battery_level {
            let frequency = measurement_frequency(level);
            if reading.measurement_frequency != Some(f64::from(frequency)) {
                out.push(virtual_event(
                    DEVICE,
                    event.instance(),
                    json!({"measurementFrequency": frequency}),
                )?);
            }
            data.insert("measurementFrequency".into(), json!(frequency));
        }
        out.insert(
            0,
            store_event(DEVICE, event.instance(), Value::Object(data))?,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use std::sync::Arc;

    #[test]
    fn policy() {
        assert_eq!(measurement_frequency(90.0), 15);
        assert_eq!(measurement_frequency(15.0), 15);
        assert_eq!(measurement_frequency(14.9), 60);
        assert_eq!(measurement_frequency(0.0), 60);
    }

    async fn run(data: Value) -> Vec<(String, String, Value)> {
        let ctx = context(
            r#"{"twinInstances":[]}"#,
            Arc::new(ktwin_sdk::MemoryStates::new()),
            at(0),
        );
        let ev = event(
            "ktwin.real.ngsi-ld-city-device",
            "ngsi-ld-city-device-aqo-nb001-p00001",
            data,
        );
        DeviceService
            .handle(&ev, &ctx)
            .await
            .unwrap()
            .iter()
            .map(summary)
            .collect()
    }

    #[tokio::test]
    async fn low_battery_device_is_told_to_slow_down_once() {
        // The paper's battery device in window 5: level 12, still at 15 s.
        let out = run(json!({"batteryLevel": 12, "measurementFrequency": 15})).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "ktwin.store.ngsi-ld-city-device");
        assert_eq!(out[0].2["measurementFrequency"], 60);
        assert_eq!(out[0].2["dateObserved"], json!(at(0)));
        assert_eq!(
            out[1],
            (
                "ktwin.virtual.ngsi-ld-city-device".to_owned(),
                "ngsi-ld-city-device-aqo-nb001-p00001".to_owned(),
                json!({"measurementFrequency": 60})
            )
        );
        // Already at 60: nothing to tell.
        assert_eq!(
            run(json!({"batteryLevel": "12", "measurementFrequency": 60}))
                .await
                .len(),
            1
        );
        // Empty battery is a level, not an absence.
        assert_eq!(
            run(json!({"BatteryLevel": 0})).await[1].2,
            json!({"measurementFrequency": 60})
        );
        // No battery level: store only, frequency untouched.
        let out = run(json!({"measurementFrequency": 90})).await;
        assert_eq!(
            (out.len(), out[0].2["measurementFrequency"].clone()),
            (1, json!(90))
        );
    }
}
