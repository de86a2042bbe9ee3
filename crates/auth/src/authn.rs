//! Turning an `Authorization` header into a [`Principal`]: API tokens from the token file, or
//! OIDC JWTs.

use std::sync::Arc;

use http::HeaderValue;

use crate::oidc::{JwtError, OidcValidator};
use crate::principal::Principal;
use crate::reload::Reloading;
use crate::token::{TOKEN_PREFIX, TokenError, TokenSet};

/// Why a request carries no acceptable credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no bearer token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
    /// An API token that is unknown or expired.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A JWT that does not validate (or no issuer is configured for JWTs).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// A JWT arrived but no OIDC issuer is configured.
    #[error("JWTs are not accepted here (no OIDC issuer is configured)")]
    NoIssuer,
}

impl AuthError {
    /// The RFC 6750 `error` code for `WWW-Authenticate`, if the token itself is at fault.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::NotBearer => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Checks credentials: API tokens (reloaded with their file) and, when configured, JWTs.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Reloading<TokenSet>,
    own: Option<Arc<TokenSet>>,
    oidc: Option<Arc<OidcValidator>>,
    session_cookie: Option<&'static str>,
}

impl Authenticator {
    /// Accepts the tokens of `tokens`.
    pub fn new(tokens: Reloading<TokenSet>) -> Self {
        Self {
            tokens,
            own: None,
            oidc: None,
            session_cookie: None,
        }
    }

    /// Also accepts a token in the cookie `name` when a request has no `Authorization`
    /// header: the session a browser got with the dashboard's page
    /// ([`crate::local::BrowserSession`]). Requests that change something must come from the
    /// page's own origin ([`crate::AuthLayer`] checks `Sec-Fetch-Site` / `Origin`).
    pub fn with_session_cookie(mut self, name: &'static str) -> Self {
        self.session_cookie = Some(name);
        self
    }

    /// The session cookie's name, if one is accepted.
    pub fn session_cookie(&self) -> Option<&'static str> {
        self.session_cookie
    }

    /// Also accepts `own`: tokens a process issued to its own parts for one run (kept in
    /// memory only, never in the token file).
    pub fn with_own_tokens(mut self, own: TokenSet) -> Self {
        self.own = Some(Arc::new(own));
        self
    }

    /// Also accepts JWTs `oidc` validates.
    pub fn with_oidc(mut self, oidc: Arc<OidcValidator>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// The principal behind an `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let credential = bearer(header).ok_or(AuthError::NotBearer)?;
        if credential.starts_with(TOKEN_PREFIX) || self.oidc.is_none() && !is_jwt(credential) {
            let now = chrono::Utc::now();
            let from_file = self.tokens.current().authenticate(credential, now);
            return Ok(match (from_file, &self.own) {
                (Err(TokenError::Unknown), Some(own)) => own.authenticate(credential, now)?,
                (result, _) => result?,
            });
        }
        match &self.oidc {
            Some(oidc) => Ok(oidc.validate(credential).await?),
            None => Err(AuthError::NoIssuer),
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(header: &HeaderValue) -> Option<&str> {
    let text = header.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn is_jwt(credential: &str) -> bool {
    credential.bytes().filter(|&b| b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenFile;
    use crate::{Scope, TwinGrant};

    #[tokio::test]
    async fn bearer_tokens_authenticate_and_other_headers_do_not() {
        let mut file = TokenFile::default();
        let token = file
            .issue("t", Scope::Write, TwinGrant::all(), None)
            .unwrap();
        let auth = Authenticator::new(Reloading::fixed(TokenSet::new(&file).unwrap()));
        let header = |text: &str| HeaderValue::from_str(text).unwrap();

        let ok = auth
            .authenticate(Some(&header(&format!("bearer {}", token.expose()))))
            .await
            .unwrap();
        assert_eq!(ok.scope, Scope::Write);
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", token.expose()] {
            assert!(
                matches!(
                    auth.authenticate(Some(&header(bad))).await,
                    Err(AuthError::NotBearer)
                ),
                "{bad}"
            );
        }
        let unknown = auth.authenticate(Some(&header("Bearer ktwin_x"))).await;
        assert!(matches!(
            unknown,
            Err(AuthError::Token(TokenError::Unknown))
        ));
        let jwt = auth.authenticate(Some(&header("Bearer a.b.c"))).await;
        assert!(matches!(jwt, Err(AuthError::NoIssuer)));
    }

    #[tokio::test]
    async fn own_tokens_authenticate_beside_the_file() {
        let mut file = TokenFile::default();
        let from_file = file
            .issue("admin", Scope::Admin, TwinGrant::all(), None)
            .unwrap();
        let mut own = TokenFile::default();
        let service = own
            .issue("service/pole", Scope::Write, TwinGrant::all(), None)
            .unwrap();
        let auth = Authenticator::new(Reloading::fixed(TokenSet::new(&file).unwrap()))
            .with_own_tokens(TokenSet::new(&own).unwrap());
        let header = |token: &str| HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        for (token, name) in [(&from_file, "admin"), (&service, "service/pole")] {
            let principal = auth
                .authenticate(Some(&header(token.expose())))
                .await
                .unwrap();
            assert_eq!(principal.name, name);
        }
        assert!(matches!(
            auth.authenticate(Some(&header("ktwin_unknown"))).await,
            Err(AuthError::Token(TokenError::Unknown))
        ));
    }
}
