//! What devices send: per-type readings that vary as bounded random walks, rendered as the
//! JSON the original devices sent (including their capitalised `WindSpeed`/`WindDirection`),
//! and how a device applies what the platform sends it back.
//!
//! The original generators were driven by the window index, so most values were constant for
//! a whole run (streetlights always `off`, batteries always 90 %). Here every numeric field
//! walks within its bounds and status fields switch with a per-message probability.

use std::io::Write;

use crate::error::VirtualError;
use crate::load::DeviceType;

/// A small, fast, seedable PRNG (SplitMix64); the simulator needs variety, not cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A numeric field that walks within `[min, max]` by at most `step` per message.
#[derive(Debug, Clone, Copy)]
struct Walk {
    field: &'static str,
    min: f64,
    max: f64,
    step: f64,
    start: f64,
    /// Rendered without decimals.
    integer: bool,
    /// Added to every step (negative: a battery draining).
    drift: f64,
}

const fn walk(field: &'static str, min: f64, max: f64, step: f64, start: f64) -> Walk {
    Walk {
        field,
        min,
        max,
        step,
        start,
        integer: false,
        drift: 0.0,
    }
}

const fn count(field: &'static str, min: f64, max: f64, step: f64, start: f64) -> Walk {
    Walk {
        integer: true,
        ..walk(field, min, max, step, start)
    }
}

/// A field switching between two values with probability `switch` per message.
#[derive(Debug, Clone, Copy)]
struct Toggle {
    field: &'static str,
    values: [&'static str; 2],
    switch: f64,
}

const TEMPERATURE: Walk = walk("temperature", -10.0, 40.0, 0.3, 18.0);
const HUMIDITY: Walk = walk("relativeHumidity", 10.0, 100.0, 1.0, 60.0);
const WIND_SPEED: Walk = walk("WindSpeed", 0.0, 20.0, 0.5, 3.0);
const WIND_DIRECTION: Walk = walk("WindDirection", 0.0, 359.0, 10.0, 180.0);
const OCCUPANCY: Walk = walk("occupancy", 0.0, 1.0, 0.05, 0.3);
const HEADWAY: Walk = walk("averageHeadwayTime", 0.5, 10.0, 0.5, 3.0);

fn walks(ty: DeviceType) -> &'static [Walk] {
    match ty {
        DeviceType::AirQuality => {
            const W: &[Walk] = &[
                walk("CODensity", 0.0, 15.0, 0.3, 2.0),
                walk("PM10Density", 0.0, 200.0, 4.0, 30.0),
                walk("PM25Density", 0.0, 80.0, 2.0, 10.0),
                walk("SO2Density", 0.0, 100.0, 2.0, 10.0),
                walk("O3Density", 0.0, 120.0, 3.0, 30.0),
                walk("NO2Density", 0.0, 200.0, 4.0, 20.0),
                walk("reliability", 0.5, 1.0, 0.02, 0.9),
                TEMPERATURE,
                HUMIDITY,
                WIND_SPEED,
                WIND_DIRECTION,
            ];
            W
        }
        DeviceType::Weather => {
            const W: &[Walk] = &[
                walk("atmosphericPressure", 980.0, 1040.0, 0.5, 1013.0),
                TEMPERATURE,
                HUMIDITY,
                WIND_SPEED,
                WIND_DIRECTION,
                walk("precipitation", 0.0, 50.0, 1.0, 0.0),
                walk("illuminance", 0.0, 100_000.0, 2_000.0, 20_000.0),
                walk("uVIndexMax", 0.0, 11.0, 0.3, 3.0),
            ];
            W
        }
        DeviceType::Noise => {
            const W: &[Walk] = &[
                walk("LAeqSoundPressure", 30.0, 100.0, 2.0, 55.0),
                walk("LAmaxSoundPressure", 40.0, 120.0, 3.0, 70.0),
                walk("LASSoundPressure", 30.0, 100.0, 2.0, 50.0),
            ];
            W
        }
        DeviceType::CrowdFlow => {
            const W: &[Walk] = &[
                walk("averageCrowdSpeed", 0.5, 8.0, 0.4, 4.0),
                HEADWAY,
                count("peopleCount", 0.0, 200.0, 5.0, 40.0),
                OCCUPANCY,
            ];
            W
        }
        DeviceType::TrafficFlow => {
            const W: &[Walk] = &[
                walk("averageVehicleSpeed", 0.0, 90.0, 4.0, 40.0),
                HEADWAY,
                walk("averageGapDistance", 1.0, 100.0, 3.0, 30.0),
                walk("averageVehicleLength", 3.0, 18.0, 0.5, 5.0),
                count("intensity", 0.0, 200.0, 8.0, 50.0),
                OCCUPANCY,
            ];
            W
        }
        DeviceType::ParkingSpot => &[],
        DeviceType::EvCharging => {
            const W: &[Walk] = &[
                count("availableCapacity", 0.0, 4.0, 1.0, 2.0),
                count("capacity", 4.0, 4.0, 0.0, 4.0),
            ];
            W
        }
        DeviceType::Streetlight => {
            const W: &[Walk] = &[walk("illuminanceLevel", 0.0, 1.0, 0.05, 0.8)];
            W
        }
        DeviceType::Battery => {
            const W: &[Walk] = &[Walk {
                drift: -0.5,
                ..walk("batteryLevel", 0.0, 100.0, 0.5, 90.0)
            }];
            W
        }
    }
}

fn toggles(ty: DeviceType) -> &'static [Toggle] {
    match ty {
        DeviceType::ParkingSpot => &[Toggle {
            field: "status",
            values: ["free", "occupied"],
            switch: 0.2,
        }],
        DeviceType::Streetlight => &[Toggle {
            field: "powerState",
            values: ["off", "on"],
            switch: 0.1,
        }],
        _ => &[],
    }
}

/// The evolving reading of one device.
#[derive(Debug, Clone)]
pub struct DeviceState {
    device_type: DeviceType,
    values: Vec<f64>,
    toggles: Vec<usize>,
    messages: u64,
    /// The measurement period (s) the platform asked for, if any.
    pub period_override: Option<f64>,
}

impl DeviceState {
    /// The initial reading of a device of `ty`.
    pub fn new(ty: DeviceType) -> Self {
        Self {
            device_type: ty,
            values: walks(ty).iter().map(|w| w.start).collect(),
            toggles: vec![0; toggles(ty).len()],
            messages: 0,
            period_override: None,
        }
    }

    /// Moves every value one step.
    pub fn advance(&mut self, rng: &mut Rng) {
        for (value, w) in self.values.iter_mut().zip(walks(self.device_type)) {
            let mut v = *value + (rng.unit() * 2.0 - 1.0) * w.step + w.drift;
            if w.drift < 0.0 && v <= w.min {
                v = w.max; // a drained battery is replaced
            }
            *value = v.clamp(w.min, w.max);
        }
        for (state, t) in self.toggles.iter_mut().zip(toggles(self.device_type)) {
            if rng.unit() < t.switch {
                *state = 1 - *state;
            }
        }
        self.messages += 1;
    }

    /// The current value of a numeric field.
    pub fn value(&self, field: &str) -> Option<f64> {
        walks(self.device_type)
            .iter()
            .position(|w| w.field == field)
            .map(|i| self.values[i])
    }

    /// The JSON payload of the current reading, stamped with `timestamp` (RFC 3339).
    pub fn render(&self, timestamp: &str, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'{');
        for (value, w) in self.values.iter().zip(walks(self.device_type)) {
            if w.integer {
                let _ = write!(out, "\"{}\":{},", w.field, value.round() as i64);
            } else {
                let _ = write!(out, "\"{}\":{:.2},", w.field, value);
            }
        }
        for (state, t) in self.toggles.iter().zip(toggles(self.device_type)) {
            let _ = write!(out, "\"{}\":\"{}\",", t.field, t.values[*state]);
        }
        if let Some(period) = self.period_override {
            let _ = write!(out, "\"measurementFrequency\":{period},");
        }
        let _ = write!(
            out,
            "\"msg_count\":{},\"timestamp\":\"{timestamp}\"}}",
            self.messages
        );
    }

    /// Applies a message the platform sent on the device's virtual topic: a positive
    /// `measurementFrequency` (s) becomes the device's period; any field the device reports
    /// takes the value sent (keys matched case-insensitively). Returns whether the period
    /// changed. Bad payloads are ignored with a reason.
    pub fn apply_virtual(&mut self, payload: &[u8]) -> Result<bool, VirtualError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(VirtualError::NotJson)?;
        let object = value.as_object().ok_or_else(|| VirtualError::NotAnObject {
            found: value.to_string().chars().take(80).collect(),
        })?;
        let mut period_changed = false;
        for (key, value) in object {
            if key.eq_ignore_ascii_case("measurementFrequency") {
                match value.as_f64() {
                    Some(p) if p > 0.0 => {
                        period_changed = self.period_override != Some(p);
                        self.period_override = Some(p);
                    }
                    _ => {
                        return Err(VirtualError::BadFrequency {
                            value: value.to_string(),
                        });
                    }
                }
            } else if let Some(i) = walks(self.device_type)
                .iter()
                .position(|w| w.field.eq_ignore_ascii_case(key))
            {
                let w = walks(self.device_type)[i];
                if let Some(v) = value.as_f64() {
                    self.values[i] = v.clamp(w.min, w.max);
                }
            } else if let Some(i) = toggles(self.device_type)
                .iter()
                .position(|t| t.field.eq_ignore_ascii_case(key))
                && let Some(pos) = toggles(self.device_type)[i]
                    .values
                    .iter()
                    .position(|v| Some(*v) == value.as_str())
            {
                self.toggles[i] = pos;
            }
        }
        Ok(period_changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_stay_in_bounds_and_vary() {
        let mut rng = Rng::new(7);
        for ty in DeviceType::ALL {
            let mut state = DeviceState::new(ty);
            let mut seen = std::collections::BTreeSet::new();
            let mut buf = Vec::new();
            for _ in 0..2_000 {
                state.advance(&mut rng);
                for (v, w) in state.values.iter().zip(walks(ty)) {
                    assert!(*v >= w.min && *v <= w.max, "{ty} {}: {v}", w.field);
                }
                state.render("2024-05-20T10:00:00Z", &mut buf);
                let json: serde_json::Value = serde_json::from_slice(&buf).unwrap();
                let mut reading = json.as_object().unwrap().clone();
                reading.remove("msg_count");
                seen.insert(serde_json::Value::Object(reading).to_string());
            }
            assert!(seen.len() > 1, "{ty} never varies");
        }
    }

    #[test]
    fn renders_the_original_field_names() {
        let state = DeviceState::new(DeviceType::Weather);
        let mut buf = Vec::new();
        state.render("2024-05-20T10:00:00Z", &mut buf);
        let json: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(json["atmosphericPressure"], 1013.0);
        assert_eq!(json["WindSpeed"], 3.0);
        assert_eq!(json["timestamp"], "2024-05-20T10:00:00Z");
        let spot = DeviceState::new(DeviceType::ParkingSpot);
        spot.render("t", &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"status":"free","msg_count":0,"timestamp":"t"}"#
        );
    }

    #[test]
    fn applies_what_the_platform_sends() {
        let mut battery = DeviceState::new(DeviceType::Battery);
        assert!(
            battery
                .apply_virtual(br#"{"measurementFrequency":60}"#)
                .unwrap()
        );
        assert!(
            !battery
                .apply_virtual(br#"{"MeasurementFrequency":60}"#)
                .unwrap()
        );
        assert_eq!(battery.period_override, Some(60.0));
        assert!(
            battery
                .apply_virtual(br#"{"measurementFrequency":0}"#)
                .is_err()
        );
        assert!(battery.apply_virtual(b"[1]").is_err());
        battery.apply_virtual(br#"{"batteryLevel": 250}"#).unwrap();
        assert_eq!(battery.value("batteryLevel"), Some(100.0));
        let mut light = DeviceState::new(DeviceType::Streetlight);
        light.apply_virtual(br#"{"powerState":"on"}"#).unwrap();
        let mut buf = Vec::new();
        light.render("t", &mut buf);
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .contains(r#""powerState":"on""#)
        );
    }
}
