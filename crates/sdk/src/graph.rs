//! The twin graph as a twin service sees it: instances and their named relationships.
//!
//! [`GraphLookup`] is what handlers use; [`HttpGraph`] reads the graph service
//! (`KTWIN_GRAPH_URL/{interface}`, the graph-cache sub-graph shape, and
//! `KTWIN_GRAPH_URL/instances/{instance}` for a twin of unknown interface), [`StaticGraph`]
//! serves a graph held in memory (tests, the local runtime, `KTWIN_GRAPH`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::error::LookupError;
use crate::http_client::get_found;

/// A graph or sub-graph: `{"twinInstances":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinGraph {
    /// The instances, each with its outgoing relationships.
    #[serde(default)]
    pub twin_instances: Vec<TwinNode>,
}

/// One twin instance of the graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TwinNode {
    /// Instance name.
    pub name: String,
    /// Its twin interface.
    #[serde(default)]
    pub interface: String,
    /// Outgoing relationships.
    #[serde(default)]
    pub relationships: Vec<Relationship>,
}

/// A named, outgoing relationship to another instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// Relationship name, e.g. `refNeighborhood`.
    pub name: String,
    /// Interface of the target.
    #[serde(default)]
    pub interface: String,
    /// Target instance.
    pub instance: String,
}

impl TwinNode {
    /// The first relationship called `name` (exact match, as declared in the model).
    pub fn relationship(&self, name: &str) -> Option<&Relationship> {
        self.relationships.iter().find(|r| r.name == name)
    }
}

/// Reads nodes of the twin graph. `Ok(None)` means the instance is not in the graph. Nodes are
/// handed out shared, not copied: a handler looks one up for nearly every event it handles.
#[async_trait]
pub trait GraphLookup: Send + Sync {
    /// The node of `instance`, an instance of `interface`.
    async fn twin(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<Arc<TwinNode>>, LookupError>;

    /// The node of `instance`, whatever its interface (the sender of a command in the original
    /// Python convention, whose interface the command does not name).
    async fn instance(&self, instance: &str) -> Result<Option<Arc<TwinNode>>, LookupError>;
}

/// A graph held in memory, indexed by instance name.
#[derive(Debug, Clone, Default)]
pub struct StaticGraph {
    nodes: HashMap<String, Arc<TwinNode>>,
}

impl StaticGraph {
    /// Indexes `graph`; a later node with the same name replaces an earlier one.
    pub fn new(graph: TwinGraph) -> Self {
        Self {
            nodes: graph
                .twin_instances
                .into_iter()
                .map(|node| (node.name.clone(), Arc::new(node)))
                .collect(),
        }
    }

    /// Parses the JSON form (`{"twinInstances":[...]}`), e.g. the `KTWIN_GRAPH` variable.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        Ok(Self::new(serde_json::from_str(json)?))
    }
}

#[async_trait]
impl GraphLookup for StaticGraph {
    async fn twin(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<Arc<TwinNode>>, LookupError> {
        Ok(self
            .nodes
            .get(instance)
            .filter(|node| node.interface.is_empty() || node.interface == interface)
            .cloned())
    }

    async fn instance(&self, instance: &str) -> Result<Option<Arc<TwinNode>>, LookupError> {
        Ok(self.nodes.get(instance).cloned())
    }
}

/// How [`HttpGraph`] keeps its per-interface copies fresh.
#[derive(Debug, Clone, Copy)]
pub struct GraphCachePolicy {
    /// A sub-graph older than this is fetched again before use.
    pub max_age: Duration,
    /// An instance missing from a sub-graph fetched longer ago than this triggers a re-fetch
    /// (twins added after the last fetch become visible at once); a younger copy is trusted.
    pub miss_refetch_after: Duration,
    /// Timeout of one request to the graph service.
    pub request_timeout: Duration,
}

impl Default for GraphCachePolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30),
            miss_refetch_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

struct CachedSubGraph {
    nodes: Arc<StaticGraph>,
    fetched_at: Instant,
    etag: Option<String>,
}

/// One answer of the graph service's instance route (`None`: not in the graph).
struct CachedInstance {
    node: Option<Arc<TwinNode>>,
    fetched_at: Instant,
}

/// How many instance answers [`HttpGraph`] keeps; past it, expired answers are dropped, then
/// all (instance lookups serve commands in the sender convention only, a rare path).
const MAX_CACHED_INSTANCES: usize = 4096;

/// Reads sub-graphs from the graph service (`GET {base}/{interface}`), one per interface,
/// cached and refreshed when stale or when an instance is missing. A `404` is an empty
/// sub-graph; a failing service is a [`LookupError`], except that a stale copy is still served
/// (the last good graph beats an outage).
pub struct HttpGraph {
    base_url: String,
    client: reqwest::Client,
    policy: GraphCachePolicy,
    cache: RwLock<HashMap<String, CachedSubGraph>>,
    instances: RwLock<HashMap<String, CachedInstance>>,
}

impl HttpGraph {
    /// A client of the graph service at `base_url` (e.g. `http://graph/api/v1/twin-graph`).
    pub fn new(base_url: &str, policy: GraphCachePolicy) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: crate::http_client::client(policy.request_timeout, None),
            policy,
            cache: RwLock::new(HashMap::new()),
            instances: RwLock::new(HashMap::new()),
        }
    }

    /// Sends `token` as a bearer token (a platform with authentication on).
    pub fn with_token(mut self, token: &str) -> Self {
        self.client = crate::http_client::client(self.policy.request_timeout, Some(token));
        self
    }

    async fn fetch(
        &self,
        interface: &str,
        etag: Option<&str>,
    ) -> Result<Option<(StaticGraph, Option<String>)>, LookupError> {
        let url = format!("{}/{interface}", self.base_url);
        let what = || format!("twin graph of {interface} ({url})");
        let mut request = self.client.get(&url);
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| LookupError::new(what(), e))?;
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status == http::StatusCode::NOT_FOUND {
            return Ok(Some((StaticGraph::default(), etag)));
        }
        if !status.is_success() {
            return Err(LookupError::new(what(), format!("status {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| LookupError::new(what(), e))?;
        let graph: TwinGraph = serde_json::from_slice(&body)
            .map_err(|e| LookupError::new(what(), format!("invalid graph JSON: {e}")))?;
        Ok(Some((StaticGraph::new(graph), etag)))
    }

    /// `GET {base}/instances/{instance}`: `404` is "not in the graph".
    async fn fetch_instance(&self, instance: &str) -> Result<Option<Arc<TwinNode>>, LookupError> {
        let what = || format!("twin {instance} in the twin graph ({})", self.base_url);
        let mut url =
            reqwest::Url::parse(&self.base_url).map_err(|e| LookupError::new(what(), e))?;
        url.path_segments_mut()
            .map_err(|()| LookupError::new(what(), "the graph URL cannot take a path"))?
            .extend(["instances", instance]);
        let Some((_, body)) = get_found(self.client.get(url), &what).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(|node| Some(Arc::new(node)))
            .map_err(|e| LookupError::new(what(), format!("invalid instance JSON: {e}")))
    }

    async fn refresh(&self, interface: &str) -> Result<Arc<StaticGraph>, LookupError> {
        let previous_etag = {
            let cache = self.cache.read().await;
            cache.get(interface).and_then(|c| c.etag.clone())
        };
        let fetched = self.fetch(interface, previous_etag.as_deref()).await;
        let mut cache = self.cache.write().await;
        match fetched {
            Ok(Some((nodes, etag))) => {
                let nodes = Arc::new(nodes);
                cache.insert(
                    interface.to_owned(),
                    CachedSubGraph {
                        nodes: nodes.clone(),
                        fetched_at: Instant::now(),
                        etag,
                    },
                );
                Ok(nodes)
            }
            Ok(None) => match cache.get_mut(interface) {
                Some(cached) => {
                    cached.fetched_at = Instant::now();
                    Ok(cached.nodes.clone())
                }
                None => Ok(Arc::new(StaticGraph::default())),
            },
            Err(err) => match cache.get(interface) {
                Some(stale) => {
                    tracing::warn!(%err, "graph service failing, using the last good sub-graph");
                    Ok(stale.nodes.clone())
                }
                None => Err(err),
            },
        }
    }
}

#[async_trait]
impl GraphLookup for HttpGraph {
    async fn twin(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<Arc<TwinNode>>, LookupError> {
        let cached = {
            let cache = self.cache.read().await;
            cache
                .get(interface)
                .map(|c| (c.nodes.clone(), c.fetched_at.elapsed()))
        };
        let nodes = match cached {
            Some((nodes, age)) if age < self.policy.max_age => {
                let found = nodes.twin(interface, instance).await?;
                if found.is_some() || age < self.policy.miss_refetch_after {
                    return Ok(found);
                }
                self.refresh(interface).await?
            }
            _ => self.refresh(interface).await?,
        };
        nodes.twin(interface, instance).await
    }

    /// Cached like the sub-graphs: a found node for `max_age`, a missing one for
    /// `miss_refetch_after`; a failing service with a cached answer serves that answer.
    async fn instance(&self, instance: &str) -> Result<Option<Arc<TwinNode>>, LookupError> {
        let cached = {
            let cache = self.instances.read().await;
            cache
                .get(instance)
                .map(|c| (c.node.clone(), c.fetched_at.elapsed()))
        };
        if let Some((node, age)) = &cached {
            let fresh_for = match node {
                Some(_) => self.policy.max_age,
                None => self.policy.miss_refetch_after,
            };
            if *age < fresh_for {
                return Ok(node.clone());
            }
        }
        let node = match self.fetch_instance(instance).await {
            Ok(node) => node,
            Err(err) => match cached {
                Some((node, _)) => {
                    tracing::warn!(%err, "graph service failing, using the last answer");
                    return Ok(node);
                }
                None => return Err(err),
            },
        };
        let mut cache = self.instances.write().await;
        if cache.len() >= MAX_CACHED_INSTANCES {
            let max_age = self.policy.max_age;
            cache.retain(|_, c| c.fetched_at.elapsed() < max_age);
            if cache.len() >= MAX_CACHED_INSTANCES {
                cache.clear();
            }
        }
        cache.insert(
            instance.to_owned(),
            CachedInstance {
                node: node.clone(),
                fetched_at: Instant::now(),
            },
        );
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups_share_the_graph_node_instead_of_copying_it() {
        let graph = StaticGraph::from_json(
            r#"{"twinInstances":[{"name":"pole-1","interface":"city-pole",
                "relationships":[{"name":"refNeighborhood","interface":"city-neighborhood",
                "instance":"nb-1"}]}]}"#,
        )
        .expect("valid graph");
        let first = graph.twin("city-pole", "pole-1").await.unwrap().unwrap();
        let second = graph.instance("pole-1").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            first
                .relationship("refNeighborhood")
                .map(|r| r.instance.as_str()),
            Some("nb-1")
        );
        assert!(graph.twin("city-light", "pole-1").await.unwrap().is_none());
    }
}
