//! `ktwin dead-letters list|replay|purge`: the dead letters of a running platform, over its
//! HTTP API (`/api/v1/dead-letters`).
//!
//! A replay sends each letter back the way it first came, so it meets every check again: a
//! CloudEvent is posted in binary mode to the broker ingress (`/api/v1/broker`), a device message
//! is published to its original MQTT topic (QoS 1). Only a letter whose replay was accepted is
//! deleted; a replayed message that fails again becomes a new letter.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use ktwin_events::{defaults, env};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;

use crate::cli::MqttBrokerArgs;
use crate::dead_letter::TOPIC_HEADER;

/// Lists, replays or purges the dead letters of a running platform.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    command: DeadLettersCommand,
    /// Base URL of the platform's HTTP API (`ktwin up`, or the event store in a cluster).
    #[arg(long, global = true, env = env::PLATFORM_URL, default_value = defaults::PLATFORM_URL)]
    url: String,
    /// Bearer token for the API.
    #[arg(long, global = true, env = env::TOKEN, hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// Lists the dead letters, oldest first.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Sends dead letters back the way they came, deleting each one accepted.
    Replay {
        /// The letters to replay (`seq` from `list`); all of them when none is given.
        #[arg(long = "seq")]
        numbers: Vec<u64>,
        /// Where CloudEvent letters are posted [default: <URL>/api/v1/broker].
        #[arg(long, env = env::BROKER)]
        broker_url: Option<String>,
        /// Where device-message letters are published.
        #[command(flatten)]
        mqtt: MqttBrokerArgs,
    },
    /// Deletes dead letters.
    Purge {
        /// The letters to delete; with `--all`, every one.
        #[arg(long = "seq", required_unless_present = "all")]
        numbers: Vec<u64>,
        /// Delete every dead letter.
        #[arg(long, conflicts_with = "numbers")]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// A dead letter as the API lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Letter {
    seq: u64,
    at: String,
    origin: String,
    reason: String,
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

impl Letter {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(serde_json::Value::as_str)
    }

    fn payload(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.payload, &self.payload_base64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .with_context(|| format!("dead letter {}: payloadBase64", self.seq)),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// The platform's dead-letter API.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        bail!("{what}: HTTP {status}: {body}")
    }

    /// Every letter, following the pages.
    async fn letters(&self) -> anyhow::Result<Vec<Letter>> {
        let mut letters = Vec::new();
        let mut path = "/api/v1/dead-letters?limit=1000".to_owned();
        loop {
            let response = self
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .with_context(|| format!("reaching {}", self.base))?;
            let response = Self::check(response, "listing dead letters").await?;
            let next = response
                .headers()
                .get("x-next-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            letters.extend(response.json::<Vec<Letter>>().await?);
            match next {
                Some(cursor) => path = format!("/api/v1/dead-letters?limit=1000&cursor={cursor}"),
                None => return Ok(letters),
            }
        }
    }

    async fn delete(&self, path: &str) -> anyhow::Result<u64> {
        let response = self.request(reqwest::Method::DELETE, path).send().await?;
        let response = Self::check(response, "deleting dead letters").await?;
        let body: serde_json::Value = response.json().await?;
        Ok(body["deleted"].as_u64().unwrap_or(0))
    }
}

/// Runs `ktwin dead-letters`.
pub async fn run(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token,
    };
    match args.command {
        DeadLettersCommand::List { format } => list(&api, format).await,
        DeadLettersCommand::Replay {
            numbers,
            broker_url,
            mqtt,
        } => {
            let broker_url = broker_url.unwrap_or_else(|| format!("{}/api/v1/broker", api.base));
            replay(&api, &numbers, &broker_url, &mqtt).await
        }
        DeadLettersCommand::Purge { numbers, all } => {
            let deleted = if all {
                api.delete("/api/v1/dead-letters").await?
            } else {
                let mut deleted = 0;
                for seq in numbers {
                    deleted += api.delete(&format!("/api/v1/dead-letters/{seq}")).await?;
                }
                deleted
            };
            println!("deleted {deleted} dead letter(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(api: &Api, format: Format) -> anyhow::Result<ExitCode> {
    let letters = api.letters().await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&letters)?),
        Format::Text => {
            for letter in &letters {
                let about = letter
                    .header("ce-id")
                    .map(|id| format!("event {id} ({})", letter.header("ce-type").unwrap_or("")))
                    .or_else(|| letter.header(TOPIC_HEADER).map(|t| format!("topic {t}")))
                    .unwrap_or_default();
                println!(
                    "{:>6}  {}  {}  {about}: {}",
                    letter.seq, letter.at, letter.origin, letter.reason
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(
    api: &Api,
    numbers: &[u64],
    broker_url: &str,
    mqtt: &MqttBrokerArgs,
) -> anyhow::Result<ExitCode> {
    let letters: Vec<Letter> = api
        .letters()
        .await?
        .into_iter()
        .filter(|l| numbers.is_empty() || numbers.contains(&l.seq))
        .collect();
    let mut device: Option<DevicePublisher> = None;
    let (mut replayed, mut failed) = (0, 0);
    for letter in &letters {
        let sent = match letter.header(TOPIC_HEADER) {
            Some(topic) => {
                if device.is_none() {
                    device = Some(DevicePublisher::connect(mqtt).await?);
                }
                let publisher = device.as_mut().expect("connected above");
                publisher.publish(topic, letter.payload()?).await
            }
            None => post_event(api, broker_url, letter).await,
        };
        match sent {
            Ok(()) => {
                api.delete(&format!("/api/v1/dead-letters/{}", letter.seq))
                    .await?;
                replayed += 1;
            }
            Err(err) => {
                eprintln!("dead letter {}: not replayed: {err:#}", letter.seq);
                failed += 1;
            }
        }
    }
    println!("replayed {replayed} dead letter(s), {failed} not");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Posts a CloudEvent letter in binary mode: its headers, its payload.
async fn post_event(api: &Api, broker_url: &str, letter: &Letter) -> anyhow::Result<()> {
    let mut request = api.http.post(broker_url);
    if let Some(token) = &api.token {
        request = request.bearer_auth(token);
    }
    for (name, value) in &letter.headers {
        if let Some(value) = value.as_str() {
            request = request.header(name.as_str(), value);
        }
    }
    let response = request.body(letter.payload()?).send().await?;
    Api::check(response, "posting to the broker ingress").await?;
    Ok(())
}

/// One MQTT connection publishing QoS 1 messages one at a time.
struct DevicePublisher {
    client: AsyncClient,
    events: rumqttc::EventLoop,
}

impl DevicePublisher {
    async fn connect(mqtt: &MqttBrokerArgs) -> anyhow::Result<Self> {
        let id = format!("ktwin-dead-letters-{}", std::process::id());
        let mut options = MqttOptions::new(id, &mqtt.mqtt_host, mqtt.mqtt_port);
        options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        let (client, events) = AsyncClient::new(options, 16);
        Ok(Self { client, events })
    }

    /// Publishes and waits for the PUBACK (one message in flight, so it is this one's).
    async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        let acked = async {
            loop {
                if let Event::Incoming(Packet::PubAck(_)) = self.events.poll().await? {
                    return Ok::<_, rumqttc::ConnectionError>(());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), acked)
            .await
            .context("no PUBACK within 30 s")??;
        Ok(())
    }
}
