//! OIDC JWT validation against a JWKS URL, for clusters whose users sign in elsewhere.
//!
//! Keys are cached by `kid`; a token signed with a key the cache does not hold refetches the
//! key set (the issuer rotated its keys), but at most once per
//! [`OidcConfig::min_refetch_interval`], so a stranger sending made-up `kid`s cannot turn ktwin
//! into a load generator against the identity provider. Issuer, audience, expiry (with
//! leeway) and the algorithm allow-list are checked; the claims become a [`Principal`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::grant::TwinGrant;
use crate::principal::{Principal, PrincipalKind};
use crate::scope::Scope;

/// Largest JWKS document read: real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 64;
/// Longest JWT considered (larger ones are refused before any parsing).
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Where tokens come from and how their claims map to ktwin's rights.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (one of the token's audiences).
    pub audience: String,
    /// The issuer's key set.
    pub jwks_url: String,
    /// Claim holding scopes: a space-separated string (OAuth 2) or an array of strings.
    pub scope_claim: String,
    /// Scope values name ktwin scopes with this prefix: `ktwin:read`, `ktwin:write`,
    /// `ktwin:admin`. The highest one present wins.
    pub scope_prefix: String,
    /// Claim holding the interfaces the caller may touch (array; absent = all).
    pub interfaces_claim: String,
    /// Claim holding the instance-name prefixes the caller may touch (array; absent = all).
    pub instance_prefixes_claim: String,
    /// Signature algorithms accepted (never `none`, never HMAC with a public key).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Floor between two fetches of the key set.
    pub min_refetch_interval: Duration,
    /// Keys older than this are refetched before use (rotation without a `kid` change).
    pub max_key_age: Duration,
    /// Time limit of one fetch.
    pub fetch_timeout: Duration,
}

impl OidcConfig {
    /// Defaults for an issuer, audience and key set URL.
    pub fn new(issuer: &str, audience: &str, jwks_url: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks_url: jwks_url.to_owned(),
            scope_claim: "scope".to_owned(),
            scope_prefix: "ktwin:".to_owned(),
            interfaces_claim: "ktwin_interfaces".to_owned(),
            instance_prefixes_claim: "ktwin_instance_prefixes".to_owned(),
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ],
            leeway: Duration::from_secs(60),
            min_refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a JWT was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a JWT, or longer than `MAX_JWT_BYTES`.
    #[error("malformed JWT")]
    Malformed,
    /// Its `alg` is not on the allow-list.
    #[error("JWT algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No key of the issuer's key set has its `kid` (after a refetch, if one was allowed).
    #[error("JWT signed with an unknown key")]
    UnknownKey,
    /// Signature, expiry, issuer or audience did not check out.
    #[error("JWT rejected: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// A claim ktwin reads has the wrong shape.
    #[error("JWT claim {claim:?}: {expected}")]
    Claim {
        /// The claim.
        claim: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// The token is valid but grants no ktwin scope.
    #[error("JWT grants no ktwin scope (expected {0}read, {0}write or {0}admin)")]
    NoScope(String),
    /// The key set could not be fetched and no cached key applies.
    #[error("the issuer's key set is unavailable: {0}")]
    Jwks(#[source] JwksError),
}

impl JwtError {
    /// Whether the caller's token is at fault (401) rather than ktwin's side (503) or the
    /// token's rights (403).
    pub fn is_credential_problem(&self) -> bool {
        !matches!(self, JwtError::Jwks(_) | JwtError::NoScope(_))
    }
}

/// The key set could not be fetched or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The HTTP request failed.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something else than 200.
    #[error("fetching {url}: HTTP {status}")]
    Status {
        /// The JWKS URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document is larger than `MAX_JWKS_BYTES`.
    #[error("{url}: key set larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge {
        /// The JWKS URL.
        url: String,
    },
    /// The document is not a JWKS.
    #[error("{url}: not a JWK set: {source}")]
    Syntax {
        /// The JWKS URL.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

struct CachedKeys {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched: Option<Instant>,
}

/// Validates JWTs of one issuer.
pub struct OidcValidator {
    config: OidcConfig,
    http: reqwest::Client,
    cache: RwLock<CachedKeys>,
    /// Serialises fetches and remembers when the last one started (the refetch floor).
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcValidator")
            .field("issuer", &self.config.issuer)
            .field("jwks_url", &self.config.jwks_url)
            .finish_non_exhaustive()
    }
}

impl OidcValidator {
    /// A validator; the key set is fetched on first use.
    pub fn new(config: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            cache: RwLock::new(CachedKeys {
                keys: HashMap::new(),
                fetched: None,
            }),
            last_fetch: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The principal a JWT stands for.
    pub async fn validate(&self, token: &str) -> Result<Principal, JwtError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(JwtError::Invalid)?;
        self.principal(&data.claims)
    }

    /// The decoding key for `kid`, refetching the key set when it is unknown or old (within the
    /// refetch floor).
    async fn key(&self, kid: Option<&str>) -> Result<Arc<DecodingKey>, JwtError> {
        let lookup = |cache: &CachedKeys| match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            // Without a kid only an unambiguous key set can tell which key was meant.
            None if cache.keys.len() == 1 => cache.keys.values().next().cloned(),
            None => None,
        };
        {
            let cache = self.cache.read().await;
            let fresh = cache
                .fetched
                .is_some_and(|at| at.elapsed() < self.config.max_key_age);
            if let Some(key) = lookup(&cache).filter(|_| fresh) {
                return Ok(key);
            }
        }
        let fetch_result = self.refetch().await;
        let cache = self.cache.read().await;
        match (lookup(&cache), fetch_result) {
            (Some(key), _) => Ok(key),
            (None, Err(err)) if cache.fetched.is_none() => Err(JwtError::Jwks(err)),
            (None, _) => Err(JwtError::UnknownKey),
        }
    }

    /// Fetches the key set unless a fetch started less than the floor ago.
    async fn refetch(&self) -> Result<(), JwksError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.min_refetch_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let keys = match self.fetch().await {
            Ok(keys) => keys,
            Err(err) => {
                metrics::counter!("ktwin_auth_jwks_fetch_failures_total").increment(1);
                tracing::warn!(%err, "fetching the OIDC key set failed");
                return Err(err);
            }
        };
        metrics::counter!("ktwin_auth_jwks_fetches_total").increment(1);
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched = Some(Instant::now());
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
        let url = &self.config.jwks_url;
        let fetch_error = |source| JwksError::Fetch {
            url: url.clone(),
            source,
        };
        let mut response = self.http.get(url).send().await.map_err(fetch_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge { url: url.clone() });
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|source| JwksError::Syntax {
            url: url.clone(),
            source,
        })?;
        Ok(decoding_keys(&set))
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal, JwtError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| claim_error("sub", "a string"))?;
        let scope = self
            .scopes(claims)?
            .into_iter()
            .max()
            .ok_or_else(|| JwtError::NoScope(self.config.scope_prefix.clone()))?;
        let grant = TwinGrant {
            interfaces: self
                .string_list(claims, &self.config.interfaces_claim)?
                .into_iter()
                .collect(),
            instance_prefixes: self.string_list(claims, &self.config.instance_prefixes_claim)?,
        };
        grant
            .validate()
            .map_err(|_| claim_error(&self.config.interfaces_claim, "valid twin names"))?;
        Ok(Principal {
            name: truncate(&format!("{}#{subject}", self.config.issuer), 256),
            scope,
            grant,
            kind: PrincipalKind::Jwt {
                issuer: self.config.issuer.clone(),
            },
        })
    }

    fn scopes(&self, claims: &serde_json::Map<String, Value>) -> Result<Vec<Scope>, JwtError> {
        let values: Vec<&str> = match claims.get(&self.config.scope_claim) {
            None => Vec::new(),
            Some(Value::String(text)) => text.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(claim_error(
                    &self.config.scope_claim,
                    "a space-separated string or an array of strings",
                ));
            }
        };
        Ok(values
            .into_iter()
            .filter_map(|value| value.strip_prefix(self.config.scope_prefix.as_str()))
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    fn string_list(
        &self,
        claims: &serde_json::Map<String, Value>,
        claim: &str,
    ) -> Result<Vec<String>, JwtError> {
        match claims.get(claim) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| claim_error(claim, "an array of strings")),
            Some(_) => Err(claim_error(claim, "an array of strings")),
        }
    }
}

fn claim_error(claim: &str, expected: &'static str) -> JwtError {
    JwtError::Claim {
        claim: claim.to_owned(),
        expected,
    }
}

/// The usable signing keys of a key set, by `kid` (keys without one are kept under "" so a
/// single-key set still works), at most [`MAX_JWKS_KEYS`].
fn decoding_keys(set: &JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    set.keys
        .iter()
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((jwk.common.key_id.clone().unwrap_or_default(), Arc::new(key)))
        })
        .take(MAX_JWKS_KEYS)
        .collect()
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
