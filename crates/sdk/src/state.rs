//! The latest state of any twin, as stored by the event store.
//!
//! [`StateLookup`] is what handlers use; [`HttpEventStore`] reads
//! `GET {KTWIN_EVENT_STORE}/api/v1/twin-events/{iface}/{instance}/latest` (a binary CloudEvent
//! or `404`), [`MemoryStates`] keeps states in memory (tests, the local runtime).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};

use crate::error::LookupError;
use crate::http_client::get_found;

/// Reads the latest stored event of a twin instance. `Ok(None)` = nothing stored yet.
#[async_trait]
pub trait StateLookup: Send + Sync {
    /// The latest event of `instance` of `interface`.
    async fn latest(&self, interface: &str, instance: &str) -> Result<Option<Event>, LookupError>;
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
    async fn latest(&self, interface: &str, instance: &str) -> Result<Option<Event>, LookupError> {
        let url = format!(
            "{}/api/v1/twin-events/{interface}/{instance}/latest",
            self.base_url
        );
        let what = || format!("latest state of {interface}/{instance} ({url})");
        let Some((headers, body)) = get_found(self.client.get(&url), &what).await? else {
            return Ok(None);
        };
        cloudevents::binding::http::to_event(&headers, body.to_vec())
            .map(Some)
            .map_err(|e| LookupError::new(what(), format!("not a CloudEvent: {e}")))
    }
}

/// States held in memory: the latest event put for each instance wins.
#[derive(Debug, Default)]
pub struct MemoryStates {
    states: RwLock<HashMap<(String, String), Event>>,
}

impl MemoryStates {
    /// No states.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `event` as the latest state of its instance; the interface is the third segment
    /// of its type (`ktwin.store.<iface>`), as the event store derives it.
    pub fn put(&self, event: Event) {
        let interface = event
            .ty()
            .split('.')
            .nth(2)
            .unwrap_or(event.ty())
            .to_owned();
        let instance = event.source().to_string();
        self.states
            .write()
            .expect("state lock poisoned")
            .insert((interface, instance), event);
    }
}

#[async_trait]
impl StateLookup for MemoryStates {
    async fn latest(&self, interface: &str, instance: &str) -> Result<Option<Event>, LookupError> {
        Ok(self
            .states
            .read()
            .expect("state lock poisoned")
            .get(&(interface.to_owned(), instance.to_owned()))
            .cloned())
    }
}
