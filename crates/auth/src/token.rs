//! API bearer tokens: the token file (names, scopes, grants and the SHA-256 of each token, never
//! the token itself) and authentication against it.
//!
//! ```yaml
//! tokens:
//!   - name: admin
//!     sha256: 3f0c…           # of the token's text
//!     scope: admin
//!   - name: pole-dashboard
//!     sha256: 9a1b…
//!     scope: read
//!     grant: {interfaces: [city-pole], instancePrefixes: [pole-00]}
//!     expires: 2026-01-01T00:00:00Z
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::files::{FileError, read_bounded, write_private};
use crate::grant::{GrantError, TwinGrant};
use crate::principal::{Principal, PrincipalKind};
use crate::scope::Scope;
use crate::secret::{Secret, SecretDigest};

/// What every API token starts with.
pub const TOKEN_PREFIX: &str = "ktwin_";

/// One token as the token file lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenEntry {
    /// Who or what holds the token (shown in access logs).
    pub name: String,
    /// SHA-256 of the token's text, in hex.
    pub sha256: String,
    /// What the token may do.
    pub scope: Scope,
    /// Which twins it may touch (all when absent).
    #[serde(default, skip_serializing_if = "TwinGrant::is_unlimited")]
    pub grant: TwinGrant,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

/// The token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// The tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// It could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// It is not a token file (YAML or JSON).
    #[error("token file: {0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// Two tokens have one name.
    #[error("token file: the name {0:?} is used twice")]
    DuplicateName(String),
    /// Two entries hold the same token.
    #[error("token file: tokens {0:?} and {1:?} have the same sha256")]
    DuplicateToken(String, String),
    /// A `sha256` is not 64 hex digits.
    #[error("token file: token {0:?}: sha256 must be 64 hex digits")]
    Digest(String),
    /// A name is empty or not printable.
    #[error("token file: token name {0:?} must be 1-128 printable characters")]
    Name(String),
    /// A grant names something that is not a twin name.
    #[error("token file: token {name:?}: {source}")]
    Grant {
        /// The token.
        name: String,
        /// Why.
        #[source]
        source: GrantError,
    },
}

/// Why a presented token was not accepted. None of these says which tokens exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token in the file has this text.
    #[error("unknown token")]
    Unknown,
    /// The token's `expires` has passed.
    #[error("token expired")]
    Expired,
}

impl TokenFile {
    /// Parses a token file (YAML, or JSON, which is YAML).
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenFileError> {
        serde_yaml_ng::from_slice(bytes).map_err(TokenFileError::Syntax)
    }

    /// Reads the token file at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        Self::parse(&read_bounded(path)?)
    }

    /// Writes the file to `path`, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), TokenFileError> {
        let yaml = serde_yaml_ng::to_string(self).map_err(TokenFileError::Syntax)?;
        Ok(write_private(path, yaml.as_bytes())?)
    }

    /// Adds a new random token named `name` and returns its text, which exists nowhere else:
    /// the file keeps only its SHA-256.
    pub fn issue(
        &mut self,
        name: &str,
        scope: Scope,
        grant: TwinGrant,
        expires: Option<DateTime<Utc>>,
    ) -> Result<Secret, TokenFileError> {
        let token = Secret::generate(TOKEN_PREFIX);
        self.tokens.push(TokenEntry {
            name: name.to_owned(),
            sha256: SecretDigest::of(token.expose()).to_hex(),
            scope,
            grant,
            expires,
        });
        match TokenSet::new(self) {
            Ok(_) => Ok(token),
            Err(err) => {
                self.tokens.pop();
                Err(err)
            }
        }
    }

    /// Removes the token named `name`; returns whether there was one.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|entry| entry.name != name);
        self.tokens.len() != before
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 128 && !name.chars().any(char::is_control)
}

/// The tokens of a file, indexed for authentication.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    by_digest: HashMap<SecretDigest, Arc<TokenEntry>>,
}

impl TokenSet {
    /// Indexes `file`, checking names, digests and grants.
    pub fn new(file: &TokenFile) -> Result<Self, TokenFileError> {
        let mut by_digest = HashMap::with_capacity(file.tokens.len());
        let mut names = std::collections::HashSet::new();
        for entry in &file.tokens {
            if !valid_name(&entry.name) {
                return Err(TokenFileError::Name(entry.name.clone()));
            }
            if !names.insert(entry.name.as_str()) {
                return Err(TokenFileError::DuplicateName(entry.name.clone()));
            }
            let digest = SecretDigest::from_hex(&entry.sha256.to_ascii_lowercase())
                .ok_or_else(|| TokenFileError::Digest(entry.name.clone()))?;
            entry
                .grant
                .validate()
                .map_err(|source| TokenFileError::Grant {
                    name: entry.name.clone(),
                    source,
                })?;
            if let Some(other) = by_digest.insert(digest, Arc::new(entry.clone())) {
                return Err(TokenFileError::DuplicateToken(
                    other.name.clone(),
                    entry.name.clone(),
                ));
            }
        }
        Ok(Self { by_digest })
    }

    /// Parses and indexes a token file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenFileError> {
        Self::new(&TokenFile::parse(bytes)?)
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The principal `presented` stands for at time `now`.
    ///
    /// The presented text is hashed and looked up by digest, and digests compare in constant
    /// time: nothing about a stored token's text leaks through timing.
    pub fn authenticate(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, TokenError> {
        let entry = self
            .by_digest
            .get(&SecretDigest::of(presented))
            .ok_or(TokenError::Unknown)?;
        if entry.expires.is_some_and(|expires| expires <= now) {
            return Err(TokenError::Expired);
        }
        Ok(Principal {
            name: entry.name.clone(),
            scope: entry.scope,
            grant: entry.grant.clone(),
            kind: PrincipalKind::Token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_authenticate_and_the_file_holds_no_token() {
        let mut file = TokenFile::default();
        let admin = file
            .issue("admin", Scope::Admin, TwinGrant::all(), None)
            .unwrap();
        let grant = TwinGrant {
            interfaces: ["city-pole".to_owned()].into(),
            instance_prefixes: vec![],
        };
        let reader = file
            .issue("reader", Scope::Read, grant.clone(), None)
            .unwrap();
        let yaml = serde_yaml_ng::to_string(&file).unwrap();
        assert!(!yaml.contains(admin.expose()) && !yaml.contains(reader.expose()));

        let set = TokenSet::parse(yaml.as_bytes()).unwrap();
        let now = Utc::now();
        let principal = set.authenticate(reader.expose(), now).unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.scope),
            ("reader", Scope::Read)
        );
        assert_eq!(principal.grant, grant);
        assert_eq!(
            set.authenticate(admin.expose(), now).unwrap().scope,
            Scope::Admin
        );
        assert_eq!(
            set.authenticate("ktwin_nope", now),
            Err(TokenError::Unknown)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let mut file = TokenFile::default();
        let now = Utc::now();
        let old = file
            .issue("old", Scope::Read, TwinGrant::all(), Some(now))
            .unwrap();
        let set = TokenSet::new(&file).unwrap();
        assert_eq!(
            set.authenticate(old.expose(), now),
            Err(TokenError::Expired)
        );
        let earlier = now - chrono::Duration::seconds(1);
        assert!(set.authenticate(old.expose(), earlier).is_ok());
    }

    #[test]
    fn bad_files_are_refused_naming_the_entry() {
        let mut file = TokenFile::default();
        file.issue("a", Scope::Read, TwinGrant::all(), None)
            .unwrap();
        let err = file
            .issue("a", Scope::Read, TwinGrant::all(), None)
            .unwrap_err();
        assert!(
            matches!(err, TokenFileError::DuplicateName(ref n) if n == "a"),
            "{err}"
        );
        assert_eq!(file.tokens.len(), 1, "a refused token is not kept");

        let mut twin = file.clone();
        twin.tokens.push(TokenEntry {
            name: "b".into(),
            ..file.tokens[0].clone()
        });
        let err = TokenSet::new(&twin).unwrap_err();
        assert!(err.to_string().contains("\"a\" and \"b\""), "{err}");

        let err = TokenSet::parse(b"tokens: [{name: x, sha256: abc, scope: read}]").unwrap_err();
        assert!(err.to_string().contains("\"x\": sha256"), "{err}");
        let err = TokenSet::parse(b"tokens: [{name: x, sha256: abc, scope: root}]").unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
        assert!(TokenSet::parse(b"tokenz: []").is_err());
    }

    #[test]
    fn revoked_tokens_stop_working_and_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let mut file = TokenFile::default();
        let token = file
            .issue("gone", Scope::Write, TwinGrant::all(), None)
            .unwrap();
        file.save(&path).unwrap();
        let mut loaded = TokenFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        assert!(loaded.revoke("gone"));
        assert!(!loaded.revoke("gone"));
        let set = TokenSet::new(&loaded).unwrap();
        assert_eq!(
            set.authenticate(token.expose(), Utc::now()),
            Err(TokenError::Unknown)
        );
    }
}
