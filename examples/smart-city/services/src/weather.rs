//! Weather-observed service: pressure tendency against the station's previous reading,
//! feels-like temperature and dew point, stored with the observation.
//!
//! * `pressureTendency`: `raising` / `falling` when the pressure moved by at least 0.1 hPa
//!   since the previous reading, `steady` otherwise or without history.
//! * `FeelsLikeTemperature` (the model's spelling): wind chill (Environment Canada / NWS 2001,
//!   wind in km/h) when T ≤ 10 °C and wind > 4.8 km/h; heat index (NWS Rothfusz regression)
//!   when T ≥ 26.7 °C and RH ≥ 40 %; the air temperature otherwise.
//! * `dewpoint`: Magnus formula (b = 17.62, c = 243.12 °C).
//!
//! Units: °C, `windSpeed` m/s, `relativeHumidity` in % (NGSI-LD fractions ≤ 1 are scaled).
//!
//! Fixed from the original: the 1945 Siple–Passel wind chill was applied at every temperature
//! and wind, so still air at 20 °C "felt like" 26.8 °C; the dew point used the
//! `T − (100 − RH)/5` shortcut, off by several degrees in dry air; the tendency compared with
//! the latest stored state, which under `persistRealEvent` could be the current reading
//! itself (always `steady`) — the previous pressure is now owned by the service and updated
//! one reading at a time per station, and exact equality no longer separates steady from
//! moving.

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler, async_trait,
    store_event,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data_object;
use crate::names::WEATHER;

/// Pressure change (hPa) below which the tendency is steady.
pub const STEADY_BAND_HPA: f64 = 0.1;

/// The readings the service uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeatherReading {
    /// hPa.
    pub atmospheric_pressure: Option<f64>,
    /// °C.
    pub temperature: Option<f64>,
    /// m/s.
    pub wind_speed: Option<f64>,
    /// % (or a fraction ≤ 1).
    pub relative_humidity: Option<f64>,
}

/// Pressure tendency from `previous` to `current`.
pub fn pressure_tendency(previous: Option<f64>, current: f64) -> &'static str {
    match previous {
        Some(p) if current - p >= STEADY_BAND_HPA => "raising",
        Some(p) if p - current >= STEADY_BAND_HPA => "falling",
        _ => "steady",
    }
}

fn humidity_percent(rh: f64) -> f64 {
    if rh <= 1.0 { rh * 100.0 } else { rh }
}

/// Feels-like temperature (°C) for `temperature` °C, wind m/s and humidity.
pub fn feels_like(
    temperature: f64,
    wind_speed: Option<f64>,
    relative_humidity: Option<f64>,
) -> f64 {
    let wind_kmh = wind_speed.unwrap_or(0.0) * 3.6;
    if temperature <= 10.0 && wind_kmh > 4.8 {
        let v = wind_kmh.powf(0.16);
        return 13.12 + 0.6215 * temperature - 11.37 * v + 0.3965 * temperature * v;
    }
    match relative_humidity.map(humidity_percent) {
        Some(rh) if temperature >= 26.7 && rh >= 40.0 => {
            let f = temperature * 9.0 / 5.0 + 32.0;
            let hi = -42.379 + 2.049_015_23 * f + 10.143_331_27 * rh
                - 0.224_755_41 * f * rh
                - 0.006_837_83 * f * f
                - 0.054_817_17 * rh * rh
                + 0.001_228_74 * f * f * rh
                + 0.000_852_82 * f * rh * rh
                - 0.000_001_99 * f * f * rh * rh;
            (hi - 32.0) * 5.0 / 9.0
        }
        _ => temperature,
    }
}

/// Dew point (°C); `None` unless 0 < RH ≤ 100 %.
pub fn dew_point(temperature: f64, relative_humidity: f64) -> Option<f64> {
    let rh = humidity_percent(relative_humidity);
    if !(rh > 0.0 && rh <= 100.0) {
        return None;
    }
    let (b, c) = (17.62, 243.12);
    let gamma = (rh / 100.0).ln() + b * temperature / (c + temperature);
    Some(c * gamma / (b - gamma))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The service; it owns each station's previous reading.
#[derive(Default)]
pub struct WeatherService {
    previous: OwnedStates<WeatherReading>,
}

#[async_trait]
impl TwinHandler for WeatherService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(WEATHER).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: WeatherReading = event.data()?;
        let mut data = data_object(event)?;
        if let Some(pressure) = reading.atmospheric_pressure {
            let tendency = self
                .previous
                .update(ctx, WEATHER, event.instance(), event.id(), |previous| {
                    let before = previous.and_then(|p| p.atmospheric_pressure);
                    Ok((
                        reading.clone(),
                        pressure_tendency(before, pressure).to_owned(),
                    ))
                })
                .await?;
            data.insert("pressureTendency".into(), json!(tendency));
        }
        if let Some(t) = reading.temperature {
            let feels = feels_like(t, reading.wind_speed, reading.relative_humidity);
            data.insert("FeelsLikeTemperature".into(), json!(round1(feels)));
            if let Some(dew) = reading.relative_humidity.and_then(|rh| dew_point(t, rh)) {
                data.insert("dewpoint".into(), json!(round1(dew)));
            }
        }
        Ok(vec![store_event(
            WEATHER,
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
    fn tendency() {
        assert_eq!(pressure_tendency(None, 1013.0), "steady");
        assert_eq!(pressure_tendency(Some(1013.0), 1013.05), "steady");
        assert_eq!(pressure_tendency(Some(1013.0), 1013.2), "raising");
        assert_eq!(pressure_tendency(Some(1013.0), 1012.5), "falling");
    }

    #[test]
    fn feels_like_and_dew_point_by_hand() {
        // 0 °C, 5 m/s = 18 km/h: 13.12 − 11.37·18^0.16 = −4.94.
        assert_eq!(round1(feels_like(0.0, Some(5.0), None)), -4.9);
        // −10 °C, 36 km/h: 13.12 − 6.215 − 11.37·1.7740 − 3.965·1.7740 = −20.30.
        assert_eq!(round1(feels_like(-10.0, Some(10.0), None)), -20.3);
        // 32 °C = 89.6 °F at 70 %: Rothfusz gives 104.7 °F = 40.4 °C.
        assert_eq!(round1(feels_like(32.0, Some(1.0), Some(70.0))), 40.4);
        // Still mild air feels like itself (the original said 26.8 °C for 20 °C).
        assert_eq!(feels_like(20.0, Some(0.0), Some(50.0)), 20.0);
        // Dew point 20 °C at 50 %: γ = ln 0.5 + 17.62·20/263.12 = 0.6462 → 243.12·γ/(17.62−γ) = 9.26.
        assert_eq!(round1(dew_point(20.0, 50.0).unwrap()), 9.3);
        assert_eq!(
            round1(dew_point(20.0, 0.5).unwrap()),
            9.3,
            "fractions are scaled"
        );
        assert_eq!(round1(dew_point(30.0, 80.0).unwrap()), 26.2);
        assert_eq!(dew_point(20.0, 0.0), None);
    }

    #[tokio::test]
    async fn tendency_follows_the_previous_reading_of_the_station() {
        let states = Arc::new(ktwin_sdk::MemoryStates::new());
        states.put(store_event(WEATHER, "wo-1", json!({"atmosphericPressure": 1010.0})).unwrap());
        let ctx = context(r#"{"twinInstances":[]}"#, states, at(0));
        let service = WeatherService::default();
        let mut outputs = Vec::new();
        for (i, pressure) in [1012.0, 1011.0, 1011.05].into_iter().enumerate() {
            let ev = event(
                "ktwin.real.ngsi-ld-city-weatherobserved",
                "wo-1",
                json!({"atmosphericPressure": pressure, "temperature": 0, "WindSpeed": 5, "relativeHumidity": 50, "seq": i}),
            );
            outputs.push(summary(&service.handle(&ev, &ctx).await.unwrap()[0]).2);
        }
        let tendencies: Vec<_> = outputs
            .iter()
            .map(|d| d["pressureTendency"].clone())
            .collect();
        assert_eq!(
            tendencies,
            vec![json!("raising"), json!("falling"), json!("steady")]
        );
        assert_eq!(outputs[0]["FeelsLikeTemperature"], -4.9);
        assert_eq!(outputs[0]["WindSpeed"], 5);
        // 0 °C at 50 %: γ = ln 0.5 = −0.6931 → 243.12·γ/(17.62−γ) = −9.20.
        assert_eq!(outputs[0]["dewpoint"], -9.2);
    }
}
