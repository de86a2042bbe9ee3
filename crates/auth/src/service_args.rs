//! The access-control arguments every standalone ktwin HTTP service takes (`ktwin gateway`,
//! `ktwin store`, `ktwin graph`): one bearer token from a Secret, a reloaded token file, OIDC
//! JWTs, or `--insecure` on a loopback address only; and the certificate its listener serves
//! TLS with ([`TlsArgs`], also `ktwin up`'s). One definition, so the services cannot drift
//! apart in how they are secured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use ktwin_events::env;
use tokio_util::sync::CancellationToken;

use crate::tls::{TlsFiles, serve_https};
use crate::{
    AccessPolicy, AuthLayer, AuthLimits, Authenticator, DEFAULT_RELOAD_INTERVAL, OidcConfig,
    OidcValidator, RateLimit, Reloading, Scope, SecretDigest, TokenEntry, TokenFile, TokenSet,
    TwinGrant,
};

/// Name of the `--token` credential in the access log.
pub const STATIC_TOKEN_NAME: &str = "api-token";

/// Failed authentications a platform service (store, graph) takes from one client address:
/// 50/s, bursts of 500. Its callers are the platform's own pods, so the limit only keeps a
/// misbehaving client from burning CPU; tokens are 256 random bits, guessing is hopeless anyway.
pub fn failure_limit() -> Option<RateLimit> {
    RateLimit::new(50, 500)
}

/// Who may call a service (flatten into its arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceAuthArgs {
    /// One bearer token callers may present, with `write` scope on every twin (the platform's
    /// token, from a Kubernetes Secret by `secretKeyRef`). Prefer --tokens-file for scoped,
    /// per-caller tokens.
    #[arg(long, env = env::API_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// Token file (`ktwin auth token` format: names, scopes, twin grants, SHA-256 of each
    /// token), reloaded when it changes (a mounted Secret).
    #[arg(long, env = env::TOKENS_FILE, value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Also accept JWTs of this OIDC issuer (needs --oidc-audience and --oidc-jwks-url).
    #[arg(long, env = env::OIDC_ISSUER, requires_all = ["oidc_audience", "oidc_jwks_url"])]
    pub oidc_issuer: Option<String>,
    /// The audience JWTs must name.
    #[arg(long, env = env::OIDC_AUDIENCE, requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,
    /// The issuer's key set (JWKS) URL, fetched when a JWT names an unknown key (rotation).
    #[arg(long, env = env::OIDC_JWKS_URL, requires = "oidc_issuer")]
    pub oidc_jwks_url: Option<String>,
    /// Serve without authentication; refused unless the listen address is loopback.
    #[arg(long, conflicts_with_all = ["token", "tokens_file", "oidc_issuer"])]
    pub insecure: bool,
}

impl ServiceAuthArgs {
    /// The layer enforcing `policy` for a service listening on `listen`: `--insecure` only on
    /// loopback (said on stderr), else at least one kind of credential must be configured.
    /// The token file is watched until `stop`.
    pub fn layer(
        &self,
        service: &str,
        listen: SocketAddr,
        policy: impl AccessPolicy,
        limits: AuthLimits,
        stop: &CancellationToken,
    ) -> anyhow::Result<AuthLayer> {
        if self.insecure {
            anyhow::ensure!(
                listen.ip().is_loopback(),
                "--insecure serves without authentication, so only on a loopback address; \
                 --listen {listen} is not one"
            );
            eprintln!("warning: --insecure: {service} serves without authentication on {listen}");
            return Ok(AuthLayer::insecure(policy));
        }
        Ok(AuthLayer::with_limits(
            self.authenticator(service, stop)?,
            policy,
            limits,
        ))
    }

    fn authenticator(
        &self,
        service: &str,
        stop: &CancellationToken,
    ) -> anyhow::Result<Authenticator> {
        anyhow::ensure!(
            self.token.is_some() || self.tokens_file.is_some() || self.oidc_issuer.is_some(),
            "{service} needs credentials to check: --token ({}), --tokens-file ({}) or \
             --oidc-issuer (or --insecure on a loopback address)",
            env::API_TOKEN,
            env::TOKENS_FILE,
        );
        let mut authenticator = match &self.tokens_file {
            Some(path) => {
                let (tokens, _watcher) =
                    Reloading::watch(path, DEFAULT_RELOAD_INTERVAL, TokenSet::parse, stop.clone())
                        .with_context(|| format!("reading the token file {}", path.display()))?;
                Authenticator::new(tokens)
            }
            None => Authenticator::new(Reloading::fixed(TokenSet::default())),
        };
        if let Some(token) = &self.token {
            authenticator = authenticator.with_own_tokens(static_token(token)?);
        }
        if let (Some(issuer), Some(audience), Some(jwks)) =
            (&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks_url)
        {
            let config = OidcConfig::new(issuer, audience, jwks);
            authenticator = authenticator.with_oidc(Arc::new(OidcValidator::new(config)));
        }
        Ok(authenticator)
    }
}

/// The certificate a listener serves TLS with (flatten into a service's arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve over TLS with this PEM certificate chain, leaf first (needs --tls-key).
    #[arg(long, env = env::TLS_CERT, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = env::TLS_KEY, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The certificate and key, when both are given.
    pub fn files(&self) -> Option<TlsFiles> {
        let (certificate, private_key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(TlsFiles {
            certificate,
            private_key,
        })
    }

    /// Binds `listen` and serves `app` on it until `stop` is cancelled, over HTTPS when a
    /// certificate is given (checked before binding), else plain HTTP; prints the bound
    /// address (`ktwin <service> listening on https://…`) so a port 0 can be found.
    pub async fn serve(
        &self,
        service: &str,
        listen: SocketAddr,
        app: axum::Router,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let acceptor = match self.files() {
            Some(files) => Some(files.acceptor()?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let address = listener.local_addr()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        println!("ktwin {service} listening on {scheme}://{address}");
        tracing::info!(%address, scheme, "{service} listening");
        match acceptor {
            Some(acceptor) => serve_https(listener, acceptor, app, stop).await,
            None => axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("serving HTTP")?,
        }
        Ok(())
    }
}

/// The token set of `--token`: one `write` token on every twin.
fn static_token(token: &str) -> anyhow::Result<TokenSet> {
    anyhow::ensure!(
        !token.trim().is_empty(),
        "an empty --token ({}) would let anyone in",
        env::API_TOKEN
    );
    let file = TokenFile {
        tokens: vec![TokenEntry {
            name: STATIC_TOKEN_NAME.to_owned(),
            sha256: SecretDigest::of(token.trim()).to_hex(),
            scope: Scope::Write,
            grant: TwinGrant::all(),
            expires: None,
        }],
    };
    Ok(TokenSet::new(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoutePolicy;

    fn policy() -> RoutePolicy {
        RoutePolicy::builder().build().unwrap()
    }

    #[tokio::test]
    async fn insecure_only_on_loopback_and_credentials_otherwise_required() {
        let stop = CancellationToken::new();
        let insecure = ServiceAuthArgs {
            insecure: true,
            ..Default::default()
        };
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(
            insecure
                .layer("test", loopback, policy(), AuthLimits::default(), &stop)
                .is_ok()
        );
        let err = insecure
            .layer("test", everywhere, policy(), AuthLimits::default(), &stop)
            .unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");

        let none = ServiceAuthArgs::default();
        let err = none
            .layer(
                "the store",
                loopback,
                policy(),
                AuthLimits::default(),
                &stop,
            )
            .unwrap_err();
        assert!(err.to_string().contains("needs credentials"), "{err}");

        let blank = ServiceAuthArgs {
            token: Some("  ".into()),
            ..Default::default()
        };
        assert!(
            blank
                .layer("test", loopback, policy(), AuthLimits::default(), &stop)
                .is_err()
        );
    }
}
