//! The load model: when each kind of device publishes. Pure functions of time, tested directly.
//!
//! The paper's profile has 6 windows of 240 s with a publish period per device type and
//! window. Within a window of period `p`, a device with phase `φ ∈ [0, 1)` publishes at
//! `start + (φ + k)·p` for k = 0, 1, … while before the window's end, so each device sends
//! `window / p` messages on average and a type's rate is `devices / p`. The original devices
//! all started together and published in lock-step bursts; staggering the phases of a type's
//! devices evenly (`φ = i / n`) keeps the rate and removes the bursts. The profile repeats
//! after its last window.

use std::fmt;
use std::str::FromStr;

use crate::error::UnknownDeviceType;

/// The kinds of simulated devices, one per device-facing twin interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceType {
    /// `ngsi-ld-city-airqualityobserved`.
    AirQuality,
    /// `ngsi-ld-city-weatherobserved`.
    Weather,
    /// `ngsi-ld-city-noiselevelobserved`.
    Noise,
    /// `ngsi-ld-city-crowdflowobserved`.
    CrowdFlow,
    /// `ngsi-ld-city-trafficflowobserved`.
    TrafficFlow,
    /// `ngsi-ld-city-parkingspot`.
    ParkingSpot,
    /// `ngsi-ld-city-evchargingstation`.
    EvCharging,
    /// `ngsi-ld-city-streetlight`.
    Streetlight,
    /// `ngsi-ld-city-device`: the battery of a sensor.
    Battery,
}

impl DeviceType {
    /// Every device type.
    pub const ALL: [DeviceType; 9] = [
        DeviceType::AirQuality,
        DeviceType::Weather,
        DeviceType::Noise,
        DeviceType::CrowdFlow,
        DeviceType::TrafficFlow,
        DeviceType::ParkingSpot,
        DeviceType::EvCharging,
        DeviceType::Streetlight,
        DeviceType::Battery,
    ];

    /// The twin interface devices of this type belong to.
    pub fn interface(self) -> &'static str {
        match self {
            DeviceType::AirQuality => "ngsi-ld-city-airqualityobserved",
            DeviceType::Weather => "ngsi-ld-city-weatherobserved",
            DeviceType::Noise => "ngsi-ld-city-noiselevelobserved",
            DeviceType::CrowdFlow => "ngsi-ld-city-crowdflowobserved",
            DeviceType::TrafficFlow => "ngsi-ld-city-trafficflowobserved",
            DeviceType::ParkingSpot => "ngsi-ld-city-parkingspot",
            DeviceType::EvCharging => "ngsi-ld-city-evchargingstation",
            DeviceType::Streetlight => "ngsi-ld-city-streetlight",
            DeviceType::Battery => "ngsi-ld-city-device",
        }
    }

    /// The device type of an interface; `None` for interfaces no device publishes to.
    pub fn of_interface(interface: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.interface() == interface)
    }

    /// A short name (`air-quality`, …) for reports and options.
    pub fn name(self) -> &'static str {
        match self {
            DeviceType::AirQuality => "air-quality",
            DeviceType::Weather => "weather",
            DeviceType::Noise => "noise",
            DeviceType::CrowdFlow => "crowd-flow",
            DeviceType::TrafficFlow => "traffic-flow",
            DeviceType::ParkingSpot => "parking-spot",
            DeviceType::EvCharging => "ev-charging",
            DeviceType::Streetlight => "streetlight",
            DeviceType::Battery => "battery",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceType {
    type Err = UnknownDeviceType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s || t.interface() == s)
            .ok_or_else(|| UnknownDeviceType {
                name: s.to_owned(),
                expected: Self::ALL.map(DeviceType::name).join(", "),
            })
    }
}

/// One window of the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Length in seconds (model time).
    pub duration: f64,
    /// Publish period in seconds per device type, indexed like [`DeviceType::ALL`];
    /// 0 = silent.
    pub periods: [f64; 9],
}

/// A cyclic load profile.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfile {
    /// The windows, in order.
    pub windows: Vec<Window>,
}

fn index_of(ty: DeviceType) -> usize {
    DeviceType::ALL
        .iter()
        .position(|&t| t == ty)
        .expect("every type is in ALL")
}

impl LoadProfile {
    /// The paper's profile: 6 windows of 240 s; periods (s) air quality, weather, noise 10;
    /// crowd flow 30,15,5,5,15,30; traffic flow 10,5,5,5,5,10; parking spot 80,15,2,2,15,80;
    /// EV charging 80,15,5,5,15,80; streetlight 0,180,0,0,180,0; battery 0,220,0,0,220,0.
    pub fn paper() -> Self {
        let columns: [[f64; 6]; 9] = [
            [10.0; 6],
            [10.0; 6],
            [10.0; 6],
            [30.0, 15.0, 5.0, 5.0, 15.0, 30.0],
            [10.0, 5.0, 5.0, 5.0, 5.0, 10.0],
            [80.0, 15.0, 2.0, 2.0, 15.0, 80.0],
            [80.0, 15.0, 5.0, 5.0, 15.0, 80.0],
            [0.0, 180.0, 0.0, 0.0, 180.0, 0.0],
            [0.0, 220.0, 0.0, 0.0, 220.0, 0.0],
        ];
        let windows = (0..6)
            .map(|w| Window {
                duration: 240.0,
                periods: std::array::from_fn(|t| columns[t][w]),
            })
            .collect();
        Self { windows }
    }

    /// Length of one cycle, in seconds.
    pub fn cycle(&self) -> f64 {
        self.windows.iter().map(|w| w.duration).sum()
    }

    /// The window containing model time `t` and its start time.
    pub fn window_at(&self, t: f64) -> Option<(usize, f64)> {
        let cycle = self.cycle();
        if cycle <= 0.0 || !t.is_finite() {
            return None;
        }
        let base = (t / cycle).floor() * cycle;
        let mut start = base;
        for (i, w) in self.windows.iter().enumerate() {
            if t < start + w.duration {
                return Some((i, start));
            }
            start += w.duration;
        }
        Some((0, start))
    }

    /// The period of `ty` in window `window` (0 = silent).
    pub fn period(&self, ty: DeviceType, window: usize) -> f64 {
        self.windows[window].periods[index_of(ty)]
    }

    /// The first publish time strictly after `after` of a device of type `ty` with phase
    /// `phase ∈ [0, 1)`; `period_override` replaces the period in the windows where the type
    /// publishes (a measurement frequency the platform set). `None` if the type never
    /// publishes.
    pub fn next_publish(
        &self,
        ty: DeviceType,
        phase: f64,
        period_override: Option<f64>,
        after: f64,
    ) -> Option<f64> {
        let (mut window, mut start) = self.window_at(after)?;
        for _ in 0..=self.windows.len() {
            let duration = self.windows[window].duration;
            let base = self.period(ty, window);
            let period = match period_override {
                Some(p) if base > 0.0 && p > 0.0 => p,
                _ => base,
            };
            if period > 0.0 {
                // Smallest k ≥ 0 with start + (phase + k)·period > after.
                let mut k = (((after - start) / period - phase).floor() + 1.0).max(0.0);
                let mut t = start + (phase + k) * period;
                // Rounding can land exactly on `after`; the next slot is the answer then.
                while t <= after {
                    k += 1.0;
                    t = start + (phase + k) * period;
                }
                if t < start + duration {
                    return Some(t);
                }
            }
            start += duration;
            window = (window + 1) % self.windows.len();
        }
        None
    }

    /// Expected messages of `devices` evenly staggered devices of `ty` in `[from, to)`:
    /// the integral of `devices / period` over the windows.
    pub fn expected_messages(&self, ty: DeviceType, devices: usize, from: f64, to: f64) -> f64 {
        let mut total = 0.0;
        let mut t = from;
        while t < to {
            let Some((window, start)) = self.window_at(t) else {
                break;
            };
            let end = (start + self.windows[window].duration).min(to);
            let period = self.period(ty, window);
            if period > 0.0 {
                total += (end - t) / period * devices as f64;
            }
            t = end;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every publish time of one device in `[from, to)`.
    fn schedule(p: &LoadProfile, ty: DeviceType, phase: f64, from: f64, to: f64) -> Vec<f64> {
        let mut times = Vec::new();
        let mut after = from - 1e-9;
        while let Some(t) = p.next_publish(ty, phase, None, after) {
            if t >= to {
                break;
            }
            times.push(t);
            after = t;
        }
        times
    }

    #[test]
    fn periods_of_the_paper() {
        let p = LoadProfile::paper();
        assert_eq!(p.cycle(), 1440.0);
        assert_eq!(p.period(DeviceType::ParkingSpot, 2), 2.0);
        assert_eq!(p.period(DeviceType::Streetlight, 0), 0.0);
        assert_eq!(p.window_at(239.9), Some((0, 0.0)));
        assert_eq!(p.window_at(240.0), Some((1, 240.0)));
        assert_eq!(p.window_at(1440.0 + 500.0), Some((2, 1440.0 + 480.0)));
    }

    #[test]
    fn publish_times_within_windows() {
        let p = LoadProfile::paper();
        // Phase 0: at the window start, then every period.
        let aq = schedule(&p, DeviceType::AirQuality, 0.0, 0.0, 240.0);
        assert_eq!(aq.len(), 24);
        assert_eq!(&aq[..3], &[0.0, 10.0, 20.0]);
        // Phase 0.5 of a 30 s period: 15, 45, … 225 in window 0 (8 messages).
        let crowd = schedule(&p, DeviceType::CrowdFlow, 0.5, 0.0, 240.0);
        assert_eq!(crowd.len(), 8);
        assert_eq!((crowd[0], crowd[7]), (15.0, 225.0));
        // Streetlights are silent in window 0 and publish at 240 + 180φ + 180k in window 1.
        let sl = schedule(&p, DeviceType::Streetlight, 0.25, 0.0, 480.0);
        assert_eq!(sl, vec![285.0, 465.0]);
        // Parking spots: 120 messages in the 2 s windows.
        assert_eq!(
            schedule(&p, DeviceType::ParkingSpot, 0.3, 480.0, 720.0).len(),
            120
        );
        // The profile wraps around.
        assert_eq!(
            p.next_publish(DeviceType::Battery, 0.0, None, 1439.0),
            Some(1440.0 + 240.0)
        );
    }

    #[test]
    fn staggered_devices_reproduce_the_model_rate() {
        let p = LoadProfile::paper();
        for ty in DeviceType::ALL {
            let n = 50;
            let (from, to) = (0.0, p.cycle());
            let sent: usize = (0..n)
                .map(|i| schedule(&p, ty, i as f64 / n as f64, from, to).len())
                .sum();
            let expected = p.expected_messages(ty, n, from, to);
            assert!(
                (sent as f64 - expected).abs() <= expected * 0.01 + 1.0,
                "{ty}: {sent} vs {expected}"
            );
        }
        // Window 2 alone: 50 air-quality devices at 10 s → 1,200 messages.
        assert_eq!(
            p.expected_messages(DeviceType::AirQuality, 50, 480.0, 720.0),
            1200.0
        );
    }

    #[test]
    fn overrides_apply_only_where_the_type_publishes() {
        let p = LoadProfile::paper();
        assert_eq!(
            p.next_publish(DeviceType::Battery, 0.0, Some(60.0), 0.0),
            Some(240.0)
        );
        assert_eq!(
            p.next_publish(DeviceType::Battery, 0.0, Some(60.0), 240.0),
            Some(300.0)
        );
        assert_eq!(
            p.next_publish(DeviceType::AirQuality, 0.0, Some(60.0), 0.0),
            Some(60.0)
        );
        let silent = LoadProfile {
            windows: vec![Window {
                duration: 10.0,
                periods: [0.0; 9],
            }],
        };
        assert_eq!(
            silent.next_publish(DeviceType::Noise, 0.0, Some(1.0), 0.0),
            None
        );
    }

    #[test]
    fn device_types_round_trip() {
        for ty in DeviceType::ALL {
            assert_eq!(ty.name().parse::<DeviceType>().unwrap(), ty);
            assert_eq!(DeviceType::of_interface(ty.interface()), Some(ty));
        }
        assert!(
            "toaster"
                .parse::<DeviceType>()
                .unwrap_err()
                .to_string()
                .contains("air-quality")
        );
    }
}
