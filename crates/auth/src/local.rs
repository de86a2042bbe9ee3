//! Credentials of a platform run on one machine (`ktwin up`): created on first start in the
//! project's state directory, readable by their owner only, and reused on later starts, so
//! auth is on by default without a manual step. The simulator gets a device credential of its
//! own, and the local user's browser a session cookie with the dashboard's page
//! ([`BrowserSession`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::{HOST, SET_COOKIE};

use crate::files::{FileError, read_bounded, write_private};
use crate::mqtt::{CredentialFileError, DeviceCredentialFile, DeviceGrant, DeviceRegistry};
use crate::secret::Secret;
use crate::token::{TokenFile, TokenFileError, TokenSet};
use crate::{Scope, TwinGrant};

/// The token file (hashes only).
pub const TOKENS_FILE: &str = "tokens.yaml";
/// The admin token's text, for its owner to use.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The device credentials file (hashes only).
pub const DEVICES_FILE: &str = "devices.yaml";
/// The simulator's MQTT password.
pub const SIMULATOR_PASSWORD_FILE: &str = "simulator.password";
/// Name of the admin token in the token file.
pub const ADMIN_TOKEN_NAME: &str = "admin";
/// MQTT username of the simulator.
pub const SIMULATOR_USERNAME: &str = "ktwin-simulator";

/// The cookie carrying a browser's session ([`BrowserSession`]).
pub const SESSION_COOKIE: &str = "ktwin_session";

/// Local credentials that could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalAuthError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The token file is invalid.
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    /// The device credentials file is invalid.
    #[error(transparent)]
    Devices(#[from] CredentialFileError),
}

/// The credentials of a local platform, ready to use.
#[derive(Debug, Clone)]
pub struct LocalCredentials {
    /// The directory holding them.
    pub dir: PathBuf,
    /// The admin token (also in [`ADMIN_TOKEN_FILE`]).
    pub admin_token: Secret,
    /// The simulator's MQTT username and password.
    pub simulator: (String, Secret),
    /// Whether the admin token was created by this call (first start, or its file was lost).
    pub created_admin_token: bool,
}

impl LocalCredentials {
    /// Makes sure `dir` holds an admin token and a simulator credential for `interfaces`
    /// (re-issued when the project's interfaces change), creating what is missing.
    pub fn ensure(dir: &Path, interfaces: &BTreeSet<String>) -> Result<Self, LocalAuthError> {
        let (admin_token, created_admin_token) = ensure_admin_token(dir)?;
        let simulator = ensure_simulator(dir, interfaces)?;
        Ok(Self {
            dir: dir.to_owned(),
            admin_token,
            simulator: (SIMULATOR_USERNAME.to_owned(), simulator),
            created_admin_token,
        })
    }

    /// The token file's path.
    pub fn tokens_file(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// The device credentials file's path.
    pub fn devices_file(&self) -> PathBuf {
        self.dir.join(DEVICES_FILE)
    }

    /// How to call the APIs, for the start-up output (names the file, never the token).
    pub fn usage(&self, base_url: &str) -> String {
        format!(
            "auth on: curl -H \"Authorization: Bearer $(cat {})\" {base_url}/api/v1/twin-graph",
            self.dir.join(ADMIN_TOKEN_FILE).display()
        )
    }
}

fn read_secret(path: &Path) -> Option<Secret> {
    let bytes = read_bounded(path).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| Secret::new(text))
}

fn ensure_admin_token(dir: &Path) -> Result<(Secret, bool), LocalAuthError> {
    let tokens_path = dir.join(TOKENS_FILE);
    let token_path = dir.join(ADMIN_TOKEN_FILE);
    let mut file = if tokens_path.exists() {
        TokenFile::load(&tokens_path)?
    } else {
        TokenFile::default()
    };
    if let Some(token) = read_secret(&token_path)
        && TokenSet::new(&file)?
            .authenticate(token.expose(), chrono::Utc::now())
            .is_ok_and(|principal| principal.scope == Scope::Admin)
    {
        return Ok((token, false));
    }
    file.revoke(ADMIN_TOKEN_NAME);
    let token = file.issue(ADMIN_TOKEN_NAME, Scope::Admin, TwinGrant::all(), None)?;
    file.save(&tokens_path)?;
    write_private(&token_path, format!("{}\n", token.expose()).as_bytes())?;
    Ok((token, true))
}

fn ensure_simulator(dir: &Path, interfaces: &BTreeSet<String>) -> Result<Secret, LocalAuthError> {
    let devices_path = dir.join(DEVICES_FILE);
    let password_path = dir.join(SIMULATOR_PASSWORD_FILE);
    let mut file = if devices_path.exists() {
        DeviceCredentialFile::load(&devices_path)?
    } else {
        DeviceCredentialFile::default()
    };
    let wanted = DeviceGrant {
        interfaces: interfaces.clone(),
        devices: Vec::new(),
    };
    let current = file
        .credentials
        .iter()
        .find(|c| c.username == SIMULATOR_USERNAME)
        .map(|c| c.grant.clone());
    if let Some(password) = read_secret(&password_path)
        && current.as_ref() == Some(&wanted)
        && DeviceRegistry::new(&file)?
            .verify(SIMULATOR_USERNAME, password.expose().as_bytes())
            .is_ok()
    {
        return Ok(password);
    }
    let password = file.issue(SIMULATOR_USERNAME, wanted)?;
    file.save(&devices_path)?;
    write_private(
        &password_path,
        format!("{}\n", password.expose()).as_bytes(),
    )?;
    Ok(password)
}

/// Hands a session token to the browser of the machine's user with the dashboard's page, as
/// an `HttpOnly`, `SameSite=Strict` cookie ([`SESSION_COOKIE`]), so that the dashboard works
/// without pasting a token. Only requests from a loopback address that name a loopback host
/// (`127.0.0.1`, `localhost`, `[::1]`) get it: a page of another site that rebinds its DNS
/// name to 127.0.0.1 sends its own name as `Host` and gets nothing.
#[derive(Clone)]
pub struct BrowserSession {
    cookie: HeaderValue,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserSession(***)")
    }
}

impl BrowserSession {
    /// A session carrying `token` (which must be a valid header value, as generated tokens are).
    pub fn new(token: &Secret) -> Option<Self> {
        let mut cookie = HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            token.expose()
        ))
        .ok()?;
        cookie.set_sensitive(true);
        Some(Self { cookie })
    }

    /// Middleware for the page's routes (`axum::middleware::from_fn_with_state`).
    pub async fn offer(
        State(session): State<Arc<BrowserSession>>,
        request: Request,
        next: Next,
    ) -> Response {
        let local = is_local_browser(&request);
        let mut response = next.run(request).await;
        if local {
            response
                .headers_mut()
                .append(SET_COOKIE, session.cookie.clone());
        }
        response
    }
}

/// Whether `request` comes from a loopback address and names a loopback host.
fn is_local_browser(request: &Request) -> bool {
    let peer_is_loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback());
    let host = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // `[::1]:8080`, `127.0.0.1:8080`, `localhost`: the host without its port.
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(address, _)| address),
        None => host.split(':').next().unwrap_or_default(),
    };
    let host_is_loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    peer_is_loopback && host_is_loopback
}

/// A listener that may not run without authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--insecure turns authentication off, which is allowed only while every listener is on loopback; {0} is not"
)]
pub struct InsecureError(pub SocketAddr);

/// Checks that every address is a loopback address (what `--insecure` requires).
pub fn loopback_only(addresses: &[SocketAddr]) -> Result<(), InsecureError> {
    match addresses.iter().find(|address| !address.ip().is_loopback()) {
        Some(address) => Err(InsecureError(*address)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interfaces(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_start_creates_private_credentials_and_later_starts_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".ktwin").join("auth");
        let first = LocalCredentials::ensure(&state, &interfaces(&["pole"])).unwrap();
        assert!(first.created_admin_token);
        let again = LocalCredentials::ensure(&state, &interfaces(&["pole"])).unwrap();
        assert!(!again.created_admin_token);
        assert_eq!(again.admin_token, first.admin_token);
        assert_eq!(again.simulator, first.simulator);

        let tokens = TokenSet::new(&TokenFile::load(&first.tokens_file()).unwrap()).unwrap();
        let admin = tokens
            .authenticate(first.admin_token.expose(), chrono::Utc::now())
            .unwrap();
        assert_eq!(admin.scope, Scope::Admin);
        let devices =
            DeviceRegistry::new(&DeviceCredentialFile::load(&first.devices_file()).unwrap())
                .unwrap();
        let grant = devices
            .verify(SIMULATOR_USERNAME, first.simulator.1.expose().as_bytes())
            .unwrap();
        assert_eq!(grant, DeviceGrant::interfaces(["pole"]));

        #[cfg(unix)]
        for name in [
            TOKENS_FILE,
            ADMIN_TOKEN_FILE,
            DEVICES_FILE,
            SIMULATOR_PASSWORD_FILE,
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let usage = first.usage("http://127.0.0.1:8080");
        assert!(
            usage.contains("admin.token") && !usage.contains(first.admin_token.expose()),
            "{usage}"
        );
    }

    #[test]
    fn new_interfaces_reissue_the_simulator_credential_and_a_lost_token_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCredentials::ensure(dir.path(), &interfaces(&["pole"])).unwrap();
        let wider =
            LocalCredentials::ensure(dir.path(), &interfaces(&["pole", "parking"])).unwrap();
        assert_ne!(wider.simulator.1, first.simulator.1);

        std::fs::remove_file(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        let replaced =
            LocalCredentials::ensure(dir.path(), &interfaces(&["pole", "parking"])).unwrap();
        assert!(replaced.created_admin_token);
        let tokens = TokenSet::new(&TokenFile::load(&replaced.tokens_file()).unwrap()).unwrap();
        assert!(
            tokens
                .authenticate(first.admin_token.expose(), chrono::Utc::now())
                .is_err()
        );
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn insecure_mode_needs_loopback_listeners() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:1883".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(loopback_only(&[loopback, v6]).is_ok());
        let err = loopback_only(&[loopback, open]).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
    }
}
