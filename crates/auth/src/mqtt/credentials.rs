//! Device credentials: usernames, Argon2id password hashes and the devices each speaks for,
//! in a credentials file (or a mounted Kubernetes Secret).
//!
//! ```yaml
//! credentials:
//!   - username: pole-001
//!     argon2: $argon2id$v=19$m=19456,t=2,p=1$…
//!     devices: [{interface: city-pole, instance: pole-001}]
//!   - username: parking-gateway        # per-interface: every parking spot
//!     argon2: $argon2id$…
//!     interfaces: [city-parkingspot]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};

use super::acl::DeviceGrant;
use crate::files::{FileError, read_bounded, write_private};
use crate::secret::{Secret, SecretDigest, random_bytes};

/// Prefix of generated device passwords.
pub const DEVICE_PASSWORD_PREFIX: &str = "ktwind_";

/// One credential as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "CredentialEntry", into = "CredentialEntry")]
pub struct DeviceCredential {
    /// MQTT username.
    pub username: String,
    /// Argon2id hash of the password (PHC string).
    pub argon2: String,
    /// The devices it speaks for.
    pub grant: DeviceGrant,
}

/// [`DeviceCredential`] as written: the grant's lists beside the username (serde cannot refuse
/// unknown keys of a flattened struct, so the shape is spelled out).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    username: String,
    argon2: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    interfaces: std::collections::BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<super::acl::DeviceRef>,
}

impl From<CredentialEntry> for DeviceCredential {
    fn from(entry: CredentialEntry) -> Self {
        Self {
            username: entry.username,
            argon2: entry.argon2,
            grant: DeviceGrant {
                interfaces: entry.interfaces,
                devices: entry.devices,
            },
        }
    }
}

impl From<DeviceCredential> for CredentialEntry {
    fn from(credential: DeviceCredential) -> Self {
        Self {
            username: credential.username,
            argon2: credential.argon2,
            interfaces: credential.grant.interfaces,
            devices: credential.grant.devices,
        }
    }
}

/// The credentials file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredentialFile {
    /// The credentials.
    #[serde(default)]
    pub credentials: Vec<DeviceCredential>,
}

/// A credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialFileError {
    /// It could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// It is not a credentials file.
    #[error("device credentials: {0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// A username appears twice.
    #[error("device credentials: username {0:?} is used twice")]
    Duplicate(String),
    /// A username is empty or not printable.
    #[error("device credentials: username {0:?} must be 1-256 printable characters")]
    Username(String),
    /// A hash is not an Argon2 PHC string.
    #[error("device credentials: {0:?}: argon2 is not an Argon2 PHC string")]
    Hash(String),
    /// A grant names something that is not a device.
    #[error("device credentials: {username:?}: {source}")]
    Grant {
        /// The credential.
        username: String,
        /// Why.
        #[source]
        source: ktwin_events::GrammarError,
    },
}

/// Why a device's credentials were refused. Neither variant says whether the username exists
/// to the device (both are "bad credentials" on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// No credential has this username.
    #[error("unknown MQTT username")]
    UnknownUser,
    /// The password does not match.
    #[error("wrong MQTT password")]
    WrongPassword,
}

impl DeviceCredentialFile {
    /// Parses a credentials file (YAML or JSON).
    pub fn parse(bytes: &[u8]) -> Result<Self, CredentialFileError> {
        serde_yaml_ng::from_slice(bytes).map_err(CredentialFileError::Syntax)
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialFileError> {
        Self::parse(&read_bounded(path)?)
    }

    /// Writes the file to `path`, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), CredentialFileError> {
        let yaml = serde_yaml_ng::to_string(self).map_err(CredentialFileError::Syntax)?;
        Ok(write_private(path, yaml.as_bytes())?)
    }

    /// Adds (or replaces) `username` with a new random password for `grant`, and returns the
    /// password, which exists nowhere else.
    pub fn issue(
        &mut self,
        username: &str,
        grant: DeviceGrant,
    ) -> Result<Secret, CredentialFileError> {
        let password = Secret::generate(DEVICE_PASSWORD_PREFIX);
        let salt: [u8; 16] = random_bytes();
        let hash = Argon2::default()
            .hash_password_with_salt(password.expose().as_bytes(), &salt)
            .map_err(|_| CredentialFileError::Hash(username.to_owned()))?;
        let previous = std::mem::take(&mut self.credentials);
        self.credentials = previous
            .iter()
            .filter(|c| c.username != username)
            .cloned()
            .collect();
        self.credentials.push(DeviceCredential {
            username: username.to_owned(),
            argon2: hash.to_string(),
            grant,
        });
        match DeviceRegistry::new(self) {
            Ok(_) => Ok(password),
            Err(err) => {
                self.credentials = previous;
                Err(err)
            }
        }
    }

    /// Removes `username`; returns whether it was there.
    pub fn revoke(&mut self, username: &str) -> bool {
        let before = self.credentials.len();
        self.credentials.retain(|c| c.username != username);
        before != self.credentials.len()
    }
}

struct Entry {
    argon2: String,
    grant: DeviceGrant,
}

/// The credentials of a file, ready to check connections against.
///
/// Argon2 is slow on purpose, and a gateway reconnecting many connections with one credential
/// would pay it each time: after a successful check the SHA-256 of the password is remembered
/// (one per username, so memory is bounded by the file), and the same password is accepted
/// from it. A reload builds a new registry, so a rotated password is checked afresh.
pub struct DeviceRegistry {
    by_username: HashMap<String, Entry>,
    verified: Mutex<HashMap<String, SecretDigest>>,
}

impl std::fmt::Debug for DeviceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRegistry")
            .field("credentials", &self.by_username.len())
            .finish_non_exhaustive()
    }
}

impl DeviceRegistry {
    /// Indexes `file`, checking usernames, hashes and grants.
    pub fn new(file: &DeviceCredentialFile) -> Result<Self, CredentialFileError> {
        let mut by_username = HashMap::with_capacity(file.credentials.len());
        for credential in &file.credentials {
            let username = &credential.username;
            if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control)
            {
                return Err(CredentialFileError::Username(username.clone()));
            }
            if argon2::PasswordHash::new(&credential.argon2).is_err() {
                return Err(CredentialFileError::Hash(username.clone()));
            }
            credential
                .grant
                .validate()
                .map_err(|source| CredentialFileError::Grant {
                    username: username.clone(),
                    source,
                })?;
            let entry = Entry {
                argon2: credential.argon2.clone(),
                grant: credential.grant.clone(),
            };
            if by_username.insert(username.clone(), entry).is_some() {
                return Err(CredentialFileError::Duplicate(username.clone()));
            }
        }
        Ok(Self {
            by_username,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Parses and indexes a credentials file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, CredentialFileError> {
        Self::new(&DeviceCredentialFile::parse(bytes)?)
    }

    /// How many credentials there are.
    pub fn len(&self) -> usize {
        self.by_username.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_username.is_empty()
    }

    /// The grant of `username` if `password` is its password. Blocking (Argon2 takes tens of
    /// milliseconds on a first check): call it from a blocking thread.
    pub fn verify(&self, username: &str, password: &[u8]) -> Result<DeviceGrant, CredentialError> {
        let entry = self
            .by_username
            .get(username)
            .ok_or(CredentialError::UnknownUser)?;
        let digest = SecretDigest::of_bytes(password);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(username)
            .is_some_and(|known| *known == digest);
        if !remembered {
            Argon2::default()
                .verify_password(password, entry.argon2.as_str())
                .map_err(|_| CredentialError::WrongPassword)?;
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(username.to_owned(), digest);
        }
        Ok(entry.grant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_passwords_verify_and_others_do_not() {
        let mut file = DeviceCredentialFile::default();
        let p1 = file.issue("p1", DeviceGrant::device("pole", "p1")).unwrap();
        let gw = file
            .issue("gw", DeviceGrant::interfaces(["parking"]))
            .unwrap();
        let yaml = serde_yaml_ng::to_string(&file).unwrap();
        assert!(!yaml.contains(p1.expose()) && !yaml.contains(gw.expose()));
        assert!(yaml.contains("$argon2id$"), "{yaml}");

        let registry = DeviceRegistry::parse(yaml.as_bytes()).unwrap();
        assert_eq!(
            registry.verify("p1", p1.expose().as_bytes()).unwrap(),
            DeviceGrant::device("pole", "p1")
        );
        // Remembered after the first check, and still only for the right password.
        assert!(registry.verify("p1", p1.expose().as_bytes()).is_ok());
        assert_eq!(
            registry.verify("p1", gw.expose().as_bytes()),
            Err(CredentialError::WrongPassword)
        );
        assert_eq!(
            registry.verify("nobody", p1.expose().as_bytes()),
            Err(CredentialError::UnknownUser)
        );
        assert_eq!(
            registry.verify("gw", gw.expose().as_bytes()).unwrap(),
            DeviceGrant::interfaces(["parking"])
        );
    }

    #[test]
    fn reissuing_rotates_and_revoking_removes() {
        let mut file = DeviceCredentialFile::default();
        let old = file.issue("p1", DeviceGrant::device("pole", "p1")).unwrap();
        let new = file.issue("p1", DeviceGrant::device("pole", "p1")).unwrap();
        assert_eq!(file.credentials.len(), 1);
        let registry = DeviceRegistry::new(&file).unwrap();
        assert!(registry.verify("p1", old.expose().as_bytes()).is_err());
        assert!(registry.verify("p1", new.expose().as_bytes()).is_ok());
        assert!(file.revoke("p1"));
        assert!(DeviceRegistry::new(&file).unwrap().is_empty());
    }

    #[test]
    fn bad_files_are_refused_naming_the_credential() {
        let err =
            DeviceRegistry::parse(b"credentials: [{username: a, argon2: plain, interfaces: [x]}]")
                .unwrap_err();
        assert!(err.to_string().contains("\"a\": argon2"), "{err}");
        let err = DeviceRegistry::parse(b"credentials: [{username: a, argon2: x, pasword: y}]")
            .unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
        let mut file = DeviceCredentialFile::default();
        let err = file
            .issue("b", DeviceGrant::device("pole", "p/1"))
            .unwrap_err();
        assert!(err.to_string().contains("\"b\""), "{err}");
        assert!(
            file.credentials.is_empty(),
            "a refused credential is not kept"
        );
    }
}
