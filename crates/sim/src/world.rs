//! The devices a simulation runs: which instance, which type, which battery device controls
//! its measurement frequency.
//!
//! A simulation is built from a twin graph (the `{"twinInstances":[...]}` shape the graph
//! service, `ktwin_model`'s instance graph and the original `ktwin_graph.json` share): every
//! instance of a device-facing interface becomes a device, and a `refDevice` relationship to an
//! `ngsi-ld-city-device` instance makes that battery device its controller. [`paper_city`]
//! generates the population of the paper's experiment without a file.

use std::collections::HashMap;

use ktwin_sdk::{Relationship, TwinGraph, TwinNode};

use crate::error::WorldError;
use crate::load::DeviceType;

/// One simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDevice {
    /// What it simulates.
    pub device_type: DeviceType,
    /// The twin instance it reports for (its MQTT topic is `ktwin/real/<iface>/<instance>`).
    pub instance: String,
    /// The battery device whose measurement frequency applies to this device as well.
    pub controller: Option<String>,
}

/// The devices of a simulation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimWorld {
    /// Devices, in a stable order.
    pub devices: Vec<SimDevice>,
}

impl SimWorld {
    /// The devices of `graph`; instances of other interfaces are ignored.
    pub fn from_graph(graph: &TwinGraph) -> Self {
        let devices = graph
            .twin_instances
            .iter()
            .filter_map(|node| {
                let device_type = DeviceType::of_interface(&node.interface)?;
                let controller = node
                    .relationships
                    .iter()
                    .find(|r| {
                        r.name.eq_ignore_ascii_case("refDevice")
                            && r.interface == DeviceType::Battery.interface()
                    })
                    .map(|r| r.instance.clone());
                Some(SimDevice {
                    device_type,
                    instance: node.name.clone(),
                    controller,
                })
            })
            .collect();
        Self { devices }
    }

    /// Parses a twin graph JSON file's content; `file` names it in errors.
    pub fn from_graph_json(text: &str, file: &str) -> Result<Self, WorldError> {
        let graph: TwinGraph =
            serde_json::from_str(text).map_err(|source| WorldError::NotAGraph {
                file: file.to_owned(),
                source,
            })?;
        let world = Self::from_graph(&graph);
        if world.devices.is_empty() {
            return Err(WorldError::NoDevices {
                file: file.to_owned(),
                interfaces: DeviceType::ALL.map(DeviceType::interface).join(", "),
            });
        }
        Ok(world)
    }

    /// Number of devices per type.
    pub fn count_by_type(&self) -> HashMap<DeviceType, usize> {
        let mut counts = HashMap::new();
        for d in &self.devices {
            *counts.entry(d.device_type).or_insert(0) += 1;
        }
        counts
    }

    /// The phase of each device: devices of one type are spread evenly over `[0, 1)`.
    pub fn phases(&self) -> Vec<f64> {
        let counts = self.count_by_type();
        let mut seen: HashMap<DeviceType, usize> = HashMap::new();
        self.devices
            .iter()
            .map(|d| {
                let i = seen.entry(d.device_type).or_insert(0);
                let phase = *i as f64 / counts[&d.device_type] as f64;
                *i += 1;
                phase
            })
            .collect()
    }
}

fn node(interface: &str, name: String, device: Option<String>) -> TwinNode {
    TwinNode {
        name,
        interface: interface.to_owned(),
        relationships: device
            .map(|instance| Relationship {
                name: "refDevice".into(),
                interface: DeviceType::Battery.interface().into(),
                instance,
            })
            .into_iter()
            .collect(),
    }
}

/// The devices of the paper's experiment for `neighborhoods` neighborhoods (`nb001`, …),
/// named as in the original graph: per neighborhood 50 poles with air-quality, weather,
/// noise, crowd-flow and traffic-flow sensors, 50 streetlights, 20 off-street parking spots,
/// one EV charging station, and a battery device for every air-quality, weather, noise,
/// streetlight and parking-spot sensor. `suffix` is appended to every name (tests use it to
/// keep runs apart).
pub fn paper_city(neighborhoods: usize, suffix: &str) -> TwinGraph {
    let mut nodes = Vec::new();
    let battery = DeviceType::Battery.interface();
    for nb in 1..=neighborhoods {
        let nb = format!("nb{nb:03}");
        for pole in 1..=50 {
            let id = format!("{nb}-p{pole:05}{suffix}");
            for (ty, prefix) in [
                (DeviceType::AirQuality, Some("aqo")),
                (DeviceType::Weather, Some("wo")),
                (DeviceType::Noise, Some("nlo")),
                (DeviceType::CrowdFlow, None),
                (DeviceType::TrafficFlow, None),
            ] {
                let device = prefix.map(|p| format!("{battery}-{p}-{id}"));
                if let Some(device) = &device {
                    nodes.push(node(battery, device.clone(), None));
                }
                nodes.push(node(
                    ty.interface(),
                    format!("{}-{id}", ty.interface()),
                    device,
                ));
            }
        }
        for light in 1..=50 {
            let id = format!("{nb}-sl{light:05}{suffix}");
            let device = format!("{battery}-{id}");
            nodes.push(node(battery, device.clone(), None));
            nodes.push(node(
                DeviceType::Streetlight.interface(),
                format!("{}-{id}", DeviceType::Streetlight.interface()),
                Some(device),
            ));
        }
        for spot in 1..=20 {
            let id = format!("{nb}-ofp0001-s{spot:04}{suffix}");
            let device = format!("{battery}-{id}");
            nodes.push(node(battery, device.clone(), None));
            nodes.push(node(
                DeviceType::ParkingSpot.interface(),
                format!("ngsi-ld-city-offstreetparkingspot-{id}"),
                Some(device),
            ));
        }
        nodes.push(node(
            DeviceType::EvCharging.interface(),
            format!("{}-{nb}-ev0001{suffix}", DeviceType::EvCharging.interface()),
            None,
        ));
    }
    TwinGraph {
        twin_instances: nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_city_population() {
        let world = SimWorld::from_graph(&paper_city(2, ""));
        let counts = world.count_by_type();
        assert_eq!(counts[&DeviceType::AirQuality], 100);
        assert_eq!(counts[&DeviceType::Streetlight], 100);
        assert_eq!(counts[&DeviceType::ParkingSpot], 40);
        assert_eq!(counts[&DeviceType::EvCharging], 2);
        assert_eq!(counts[&DeviceType::Battery], 2 * (150 + 50 + 20));
        assert_eq!(world.devices.len(), 2 * 541);
        let aq = world
            .devices
            .iter()
            .find(|d| d.instance == "ngsi-ld-city-airqualityobserved-nb001-p00001")
            .unwrap();
        assert_eq!(
            aq.controller.as_deref(),
            Some("ngsi-ld-city-device-aqo-nb001-p00001")
        );
    }

    #[test]
    fn graph_files_and_phases() {
        let text = r#"{"twinInstances":[
            {"name":"city-pole-1","interface":"city-pole"},
            {"name":"aq-1","interface":"ngsi-ld-city-airqualityobserved",
             "relationships":[{"name":"refDevice","interface":"ngsi-ld-city-device","instance":"dev-1"}]},
            {"name":"aq-2","interface":"ngsi-ld-city-airqualityobserved"},
            {"name":"dev-1","interface":"ngsi-ld-city-device"}]}"#;
        let world = SimWorld::from_graph_json(text, "g.json").unwrap();
        assert_eq!(world.devices.len(), 3);
        assert_eq!(world.devices[0].controller.as_deref(), Some("dev-1"));
        assert_eq!(world.phases(), vec![0.0, 0.5, 0.0]);
        let err = SimWorld::from_graph_json(r#"{"twinInstances":[]}"#, "g.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("g.json") && err.contains("no instance"),
            "{err}"
        );
        assert!(
            SimWorld::from_graph_json("[", "x.json")
                .unwrap_err()
                .to_string()
                .contains("x.json")
        );
    }
}
