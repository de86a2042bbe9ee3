//! The MQTT broker devices talk to: an embedded rumqttd on a loopback port (nothing to
//! install), or an external broker given by URL (`--mqtt mqtt://host:1883`).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ktwin_events::{MQTT_PORT, TopicKind};

pub use crate::device_acks::DeviceAcks;
pub use crate::error::MqttError;
pub use crate::mqtt_link::LinkSource;

/// Client id of the platform's in-process connection to the embedded broker.
const DEVICE_LINK_ID: &str = "ktwin-up-devices";

/// Largest MQTT payload the embedded broker accepts. Above the dispatcher's JSON limit on
/// purpose: oversized device messages must reach the dispatcher to be dead-lettered with a
/// reason instead of the broker silently dropping the connection.
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024;

/// How much of the device messages the embedded broker keeps for the platform's link while the
/// link is behind (its consumers blocked on bus backpressure): an in-memory log per subscription
/// filter of `segments` segments of about `segment_bytes` each (a message counts its topic,
/// payload and 4 bytes). A link further behind than the log loses the oldest messages, which
/// devices already had their acknowledgement for: [`LinkSource`] counts them
/// (`ktwin_mqtt_link_dropped_total`) and logs them (`docs/architecture.md`, "MQTT link backlog").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLog {
    /// Bytes of one segment (at least 1 KiB; larger than any payload).
    pub segment_bytes: usize,
    /// Segments kept, the one being written included (at least 1).
    pub segments: usize,
}

impl Default for MessageLog {
    /// 8 × 4 MiB: some 100k device messages of ~300 bytes, two minutes at N = 20. It is held
    /// in memory and fills at the pace of the devices whether or not the link is behind
    /// (rumqttd frees a log only beyond its cap), so it bounds the broker's footprint: at
    /// 8 × 16 MiB a soak's memory grew for half an hour (docs/benchmarks.md, "Soak"). Behind
    /// the MQTT gate the link is never further behind than the devices' in-flight windows
    /// (docs/architecture.md, "MQTT link backlog").
    fn default() -> Self {
        Self {
            segment_bytes: 4 * 1024 * 1024,
            segments: 8,
        }
    }
}

/// What the embedded broker keeps per subscription filter other than the platform link's:
/// the filters devices subscribe to for their commands. rumqttd keeps an in-memory log per
/// distinct filter and frees it only beyond its cap, so with the link's size every filter a
/// device subscribes to would come to hold up to 128 MiB of commands, and a soak's memory grew
/// with the commands sent. 4 × 64 KiB: several hundred commands of a few hundred bytes for a
/// subscriber that is behind (a device resuming its session); one further behind resumes at
/// the oldest command kept.
pub const DEVICE_FILTER_LOG: MessageLog = MessageLog {
    segment_bytes: 64 * 1024,
    segments: 4,
};

/// Where the MQTT broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttAddress {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl MqttAddress {
    /// Parses `mqtt://host[:port]` or `tcp://host[:port]` (port [`MQTT_PORT`] by default) or
    /// `host:port`.
    pub fn parse(url: &str) -> Result<Self, MqttError> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .unwrap_or(url)
            .trim_end_matches('/');
        if rest.contains("://") {
            return Err(MqttError::UnsupportedScheme {
                url: url.to_owned(),
            });
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|source| MqttError::BadPort {
                    url: url.to_owned(),
                    port: port.to_owned(),
                    source,
                })?,
            ),
            None => (rest, MQTT_PORT),
        };
        if host.is_empty() {
            return Err(MqttError::NoHost {
                url: url.to_owned(),
            });
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// `mqtt://host:port`.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }
}

/// A running embedded MQTT broker (MQTT 3.1.1 and 5 on the same port pair).
///
/// rumqttd offers no way to stop its threads, so it lives until the process exits; `ktwin up`
/// starts exactly one.
pub struct EmbeddedMqtt {
    /// Where MQTT 3.1.1 clients connect.
    pub v4: SocketAddr,
    /// Where MQTT 5 clients connect.
    pub v5: SocketAddr,
    /// The platform's own connection to the broker, in-process (no socket).
    pub link: LinkSource,
}

impl std::fmt::Debug for EmbeddedMqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedMqtt")
            .field("v4", &self.v4)
            .field("v5", &self.v5)
            .finish_non_exhaustive()
    }
}

impl EmbeddedMqtt {
    /// The address of the MQTT 3.1.1 listener.
    pub fn address(&self) -> MqttAddress {
        MqttAddress {
            host: self.v4.ip().to_string(),
            port: self.v4.port(),
        }
    }
}

/// Starts rumqttd on 127.0.0.1: MQTT 3.1.1 on `port` (0 = any free port) and MQTT 5 on a free
/// port, with an in-process link subscribed to device messages (`ktwin/real/#`, the dotted
/// grammar, and the `declared` telemetry filters of DTDL MQTT extensions). If `port` is
/// taken (a Mosquitto already running, say) this fails naming the port, so a device never
/// silently talks to another broker. Blocks until the broker listens.
///
/// With a `login` (username, password), both listeners accept only that login: the broker then
/// sits behind `ktwin_auth`'s MQTT gate, which authenticates devices and enforces their topic
/// ACLs (rumqttd has no publish or subscribe authorisation of its own).
pub fn start_embedded(
    port: u16,
    login: Option<(&str, &str)>,
    declared: &[String],
) -> Result<EmbeddedMqtt, MqttError> {
    start_embedded_with(port, login, MessageLog::default(), declared)
}

/// [`start_embedded`] keeping `log` for the platform's link while it is behind (every other
/// filter keeps [`DEVICE_FILTER_LOG`]).
pub fn start_embedded_with(
    port: u16,
    login: Option<(&str, &str)>,
    log: MessageLog,
    declared: &[String],
) -> Result<EmbeddedMqtt, MqttError> {
    let v4 = reserve(port)?;
    let v5 = reserve(0)?;
    let auth = login
        .map(|(username, password)| HashMap::from([(username.to_owned(), password.to_owned())]));
    let server = |name: &str, listen: SocketAddr| rumqttd::ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: auth.clone(),
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 1_000,
            // Messages kept per subscription filter for subscribers that are behind: the
            // link's filters keep `log`, every other filter the devices' smaller log.
            max_segment_size: DEVICE_FILTER_LOG.segment_bytes,
            max_segment_count: DEVICE_FILTER_LOG.segments,
            custom_segment: Some(link_segments(log, declared)),
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server("mqtt-v4", v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("mqtt-v5", v5))])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    let mut link = LinkSource::connect(&broker, DEVICE_LINK_ID)?;
    for filter in declared {
        link.subscribe(filter)?;
    }
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(err) = broker.start() {
                tracing::error!(%err, "embedded MQTT broker stopped");
            }
        })
        .map_err(MqttError::Thread)?;
    wait_listening(v4, Duration::from_secs(5))?;
    wait_listening(v5, Duration::from_secs(5))?;
    Ok(EmbeddedMqtt { v4, v5, link })
}

/// The segment configuration of the link's filters. rumqttd applies an entry to each filter
/// that matches its key as a topic would, so the link's single-level filter `+` (the dotted
/// grammar) also gives a device's single-level filters the link's log.
fn link_segments(log: MessageLog, declared: &[String]) -> HashMap<String, rumqttd::SegmentConfig> {
    // rumqttd panics below these.
    let segment = rumqttd::SegmentConfig {
        max_segment_size: log.segment_bytes.max(1024),
        max_segment_count: log.segments.max(1),
    };
    TopicKind::Real
        .mqtt_filters()
        .into_iter()
        .chain(declared.iter().cloned())
        .map(|filter| (filter, segment.clone()))
        .collect()
}

/// Checks that `port` is free on the loopback interface (picking one for 0).
fn reserve(port: u16) -> Result<SocketAddr, MqttError> {
    TcpListener::bind(("127.0.0.1", port))
        .and_then(|listener| listener.local_addr())
        .map_err(|source| MqttError::PortTaken { port, source })
}

fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<(), MqttError> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(MqttError::NotListening { addr, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        assert_eq!(
            MqttAddress::parse("mqtt://127.0.0.1:1884").unwrap(),
            MqttAddress {
                host: "127.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(MqttAddress::parse("tcp://broker").unwrap().port, 1883);
        assert_eq!(
            MqttAddress::parse("localhost:1883").unwrap().host,
            "localhost"
        );
        let message = |url: &str| MqttAddress::parse(url).unwrap_err().to_string();
        assert!(message("mqtts://x:8883").contains("unsupported scheme"));
        assert!(message("mqtt://x:http").contains("\"http\""));
        assert!(message("mqtt://:1883").contains("no host"));
        assert_eq!(
            MqttAddress::parse("mqtt://h:1/").unwrap().url(),
            "mqtt://h:1"
        );
    }

    #[test]
    fn a_taken_port_is_refused_with_advice() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = start_embedded(port, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains("--mqtt"),
            "{err}"
        );
    }
}
