//! The latest state of any twin, as stored by the event store.
//!
//! [`StateLookup`] is what handlers use; [`HttpEventStore`] reads
//! `GET {KTWIN_EVENT_STORE}/api/v1/twin-events/{iface}/{instance}/latest` (a binary CloudEvent
//! with its version as `ETag`, or `404`) and writes conditionally (`POST
//! /api/v1/twin-events` with `If-Match`, `412` when the state moved on), [`MemoryStates`] keeps
//! states in memory (tests, the local runtime).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};

use http::header::{ETAG, IF_MATCH, IF_NONE_MATCH};
use http::{HeaderValue, StatusCode};

use crate::broker::to_binary_http;
use crate::error::LookupError;
use crate::http_client::get_found;

/// The latest stored event of an instance with the version of the state, which a conditional
/// write names ([`StateLookup::write_if`]).
#[derive(Debug, Clone)]
pub struct VersionedState {
    /// The latest event (its data: the merged state; its time: the newest event's).
    pub event: Event,
    /// The state's version (the event store's `ETag`, without quotes).
    pub version: String,
}

/// What a conditional write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConditionalWrite {
    /// Stored, or stored already (the same event again): either way, it is in the store.
    Written,
    /// The instance's state is no longer at the expected version: nothing was written.
    Conflict,
}

/// Reads the latest stored event of a twin instance. `Ok(None)` = nothing stored yet.
#[async_trait]
pub trait StateLookup: Send + Sync {
    /// The latest event of `instance` of `interface`; by default the event of
    /// [`StateLookup::latest_versioned`], for lookups that keep versions.
    async fn latest(&self, interface: &str, instance: &str) -> Result<Option<Event>, LookupError> {
        Ok(self
            .latest_versioned(interface, instance)
            .await?
            .map(|state| state.event))
    }

    /// The latest event of `instance` of `interface` with its version. A lookup that keeps no
    /// versions (the default) fails: conditional writes need the event store.
    async fn latest_versioned(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<VersionedState>, LookupError> {
        Err(LookupError::new(
            format!("versioned state of {interface}/{instance}"),
            "this state lookup keeps no versions: point KTWIN_EVENT_STORE at the event store",
        ))
    }

    /// Stores `event` (a `ktwin.store.<interface>` event whose source is the instance) only
    /// if the instance's state is still at version `expected` (`None`: no state stored). The
    /// same event stored already is [`ConditionalWrite::Written`] whatever the version.
    async fn write_if(
        &self,
        event: Event,
        _expected: Option<&str>,
    ) -> Result<ConditionalWrite, LookupError> {
        Err(LookupError::new(
            format!("conditional write of event {}", event.id()),
            "this state lookup cannot write: point KTWIN_EVENT_STORE at the event store",
        ))
    }
}

/// A client of the event store's `latest` route.
pub struct HttpEventStore {
    base_url: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpEventStore {
    /// A client of the event store at `base_url` (its root, without `/api/v1`); `timeout`
    /// bounds each request.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: crate::http_client::client(timeout, None),
            timeout,
        }
    }

    /// Sends `token` as a bearer token (a platform with authentication on).
    pub fn with_token(mut self, token: &str) -> Self {
        self.client = crate::http_client::client(self.timeout, Some(token));
        self
    }
}

#[async_trait]
impl StateLookup for HttpEventStore {
    async fn latest_versioned(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<VersionedState>, LookupError> {
        let url = format!(
            "{}/api/v1/twin-events/{interface}/{instance}/latest",
            self.base_url
        );
        let what = || format!("latest state of {interface}/{instance} ({url})");
        let Some((headers, body)) = get_found(self.client.get(&url), &what).await? else {
            return Ok(None);
        };
        let version = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        let event = cloudevents::binding::http::to_event(&headers, body.to_vec())
            .map_err(|e| LookupError::new(what(), format!("not a CloudEvent: {e}")))?;
        Ok(Some(VersionedState { event, version }))
    }

    async fn write_if(
        &self,
        event: Event,
        expected: Option<&str>,
    ) -> Result<ConditionalWrite, LookupError> {
        let url = format!("{}/api/v1/twin-events", self.base_url);
        let what = format!("conditional write of event {} ({url})", event.id());
        let (mut headers, body) =
            to_binary_http(event).map_err(|e| LookupError::new(what.clone(), e))?;
        let precondition = match expected {
            Some(version) => (IF_MATCH, HeaderValue::from_str(&format!("\"{version}\""))),
            None => (IF_NONE_MATCH, Ok(HeaderValue::from_static("*"))),
        };
        let (name, value) = precondition;
        headers.insert(name, value.map_err(|e| LookupError::new(what.clone(), e))?);
        let response = self
            .client
            .post(&url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| LookupError::new(what.clone(), e))?;
        match response.status() {
            status if status.is_success() => Ok(ConditionalWrite::Written),
            StatusCode::PRECONDITION_FAILED => Ok(ConditionalWrite::Conflict),
            status => {
                let body = response.text().await.unwrap_or_default();
                let start: String = body.chars().take(200).collect();
                Err(LookupError::new(what, format!("status {status}: {start}")))
            }
        }
    }
}

/// States held in memory: the latest event put (or written) for each instance wins, whole (the
/// event store merges; this stand-in does not). Each put or write gives the instance a new
/// version, so conditional writes work as against the store.
#[derive(Debug, Default)]
pub struct MemoryStates {
    states: RwLock<Versioned>,
}

#[derive(Debug, Default)]
struct Versioned {
    latest: HashMap<(String, String), (Event, u64)>,
    last_version: u64,
}

impl Versioned {
    fn insert(&mut self, event: Event) {
        self.last_version += 1;
        self.latest
            .insert(instance_key(&event), (event, self.last_version));
    }
}

/// The (interface, instance) of a store event: the third segment of its type
/// (`ktwin.store.<iface>`), as the event store derives it, and its source.
fn instance_key(event: &Event) -> (String, String) {
    let interface = event.ty().split('.').nth(2).unwrap_or(event.ty());
    (interface.to_owned(), event.source().to_string())
}

impl MemoryStates {
    /// No states.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `event` as the latest state of its instance; the interface is the third segment
    /// of its type (`ktwin.store.<iface>`), as the event store derives it.
    pub fn put(&self, event: Event) {
        self.states
            .write()
            .expect("state lock poisoned")
            .insert(event);
    }
}

#[async_trait]
impl StateLookup for MemoryStates {
    async fn latest_versioned(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<VersionedState>, LookupError> {
        let states = self.states.read().expect("state lock poisoned");
        let key = (interface.to_owned(), instance.to_owned());
        Ok(states
            .latest
            .get(&key)
            .map(|(event, version)| VersionedState {
                event: event.clone(),
                version: version.to_string(),
            }))
    }

    async fn write_if(
        &self,
        event: Event,
        expected: Option<&str>,
    ) -> Result<ConditionalWrite, LookupError> {
        let mut states = self.states.write().expect("state lock poisoned");
        let current = states.latest.get(&instance_key(&event));
        if current
            .is_some_and(|(stored, _)| stored.id() == event.id() && stored.data() == event.data())
        {
            return Ok(ConditionalWrite::Written);
        }
        let current = current.map(|(_, version)| version.to_string());
        if current.as_deref() != expected {
            return Ok(ConditionalWrite::Conflict);
        }
        states.insert(event);
        Ok(ConditionalWrite::Written)
    }
}
