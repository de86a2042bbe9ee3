//! Secrets ktwin generates (API tokens, device passwords) and how they are compared.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Random bytes in every generated secret: 256 bits, beyond any guessing, which is why tokens
/// are stored as a plain SHA-256 rather than a slow password hash.
pub const SECRET_BYTES: usize = 32;

/// A secret in plain text: shown to its owner once, never logged (its `Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// `prefix` followed by `SECRET_BYTES` random bytes in URL-safe base64. The prefix lets
    /// secret scanners and people recognise what leaked.
    ///
    /// # Panics
    /// When the operating system's random generator fails, which leaves nothing safe to do.
    pub fn generate(prefix: &str) -> Self {
        let bytes: [u8; SECRET_BYTES] = random_bytes();
        Self(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a secret read from somewhere (a file, an environment variable).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain text, for handing to its owner or a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `n` random bytes from the operating system.
///
/// # Panics
/// When the operating system's random generator fails.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator works");
    bytes
}

/// The SHA-256 of a high-entropy secret, compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct SecretDigest(pub(crate) [u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self::of_bytes(secret.as_bytes())
    }

    /// The digest of `secret` given as bytes (an MQTT password need not be UTF-8).
    pub fn of_bytes(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Lower-case hex, as stored in files.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

/// Constant time: how many leading bytes match must not show in the time a comparison takes.
impl PartialEq for SecretDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for SecretDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_distinct_prefixed_and_redacted() {
        let a = Secret::generate("ktwin_");
        let b = Secret::generate("ktwin_");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("ktwin_"));
        assert_eq!(a.expose().len(), "ktwin_".len() + 43);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let digest = SecretDigest::of("abc");
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(SecretDigest::from_hex("xyz"), None);
        assert_eq!(SecretDigest::from_hex(&"g".repeat(64)), None);
    }
}
