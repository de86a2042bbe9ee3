//! A local OIDC issuer for tests of services that accept JWTs: an EC P-256 signing key, its
//! key set served over HTTP on loopback, and tokens signed with it (or forged with another key
//! under the same key id).

use axum::Router;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Audience the issuer's tokens name.
pub const AUDIENCE: &str = "ktwin";

/// Key id of the issuer's key.
const KID: &str = "test-key";

/// An issuer whose key set is served at [`TestIssuer::jwks_url`].
pub struct TestIssuer {
    /// Its `iss`.
    pub issuer: String,
    /// Where its key set is served.
    pub jwks_url: String,
    key: EncodingKey,
}

fn new_key() -> EncodingKey {
    let pair = rcgen::KeyPair::generate().expect("an EC key pair");
    EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("a PEM EC key")
}

impl TestIssuer {
    /// Generates a key and serves its key set on a free loopback port.
    pub async fn start() -> Self {
        let key = new_key();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("a JWK of the key");
        jwk.common.key_id = Some(KID.to_owned());
        let keys = JwkSet { keys: vec![jwk] };
        let app = Router::new().route(
            "/jwks",
            get(move || {
                let keys = keys.clone();
                async move { axum::Json(keys) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            issuer: format!("http://{address}/issuer"),
            jwks_url: format!("http://{address}/jwks"),
            key,
        }
    }

    /// Claims of a token for `sub` with `scope` (`"ktwin:read"`, …), valid for ten minutes.
    pub fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": self.issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, "scope": scope})
    }

    /// `claims` signed with the issuer's key.
    pub fn sign(&self, claims: &Value) -> String {
        encode(&self.key, claims)
    }

    /// `claims` signed with a key the issuer never published, under the issuer's key id.
    pub fn forge(&self, claims: &Value) -> String {
        encode(&new_key(), claims)
    }

    /// A token that expired an hour ago (well beyond any leeway).
    pub fn expired(&self, sub: &str, scope: &str) -> String {
        let mut claims = self.claims(sub, scope);
        let past = chrono::Utc::now().timestamp() - 3600;
        claims["iat"] = json!(past - 600);
        claims["exp"] = json!(past);
        self.sign(&claims)
    }
}

fn encode(key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("a signed JWT")
}
