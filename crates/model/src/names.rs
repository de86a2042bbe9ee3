//! Kubernetes names for twins: DTMI → TwinInterface name normalisation and DNS-1035 checks.
//!
//! The rule (documented in `docs/project-format.md`):
//!
//! 1. strip the configured prefix (e.g. `dtmi:digitaltwins:`) if the id starts with it;
//! 2. drop a `;1` version suffix, turn any other `;N` into `-vN`;
//! 3. lower-case; every run of characters outside `[a-z0-9]` becomes one `-`; leading and
//!    trailing `-` are trimmed; a name starting with a digit gets an `x-` prefix (DNS-1035 names
//!    start with a letter);
//! 4. a name over 63 characters keeps its first 54 characters and gets `-` plus the first 8 hex
//!    digits of the SHA-256 of the full normalised name, so distinct long ids stay distinct.
//!
//! `dtmi:digitaltwins:ngsi_ld:city:AirQualityObserved;1` → `ngsi-ld-city-airqualityobserved`.

use sha2::{Digest, Sha256};

/// The longest DNS-1035 label.
pub const MAX_NAME_LEN: usize = 63;
/// Hex digits of the hash appended to truncated names.
const HASH_LEN: usize = 8;

/// Why a name is not a valid Kubernetes (DNS-1035 label) name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing is left of the id after normalisation.
    #[error("{value:?} gives an empty name: expected letters or digits")]
    Empty {
        /// The id or name as given.
        value: String,
    },
    /// The name is longer than 63 characters.
    #[error("{value:?} is {len} characters long: expected at most 63")]
    TooLong {
        /// The name as given.
        value: String,
        /// Its length in characters.
        len: usize,
    },
    /// The name is not a DNS-1035 label.
    #[error(
        "{value:?} is not a DNS-1035 label: expected lower-case letters, digits and '-', \
         starting with a letter and not ending with '-'"
    )]
    Invalid {
        /// The name as given.
        value: String,
    },
}

/// Normalises a DTDL identifier into a TwinInterface name (see the module docs).
pub fn interface_name(dtmi: &str, strip_prefix: Option<&str>) -> Result<String, NameError> {
    let mut id = dtmi;
    if let Some(prefix) = strip_prefix.filter(|p| !p.is_empty()) {
        id = id.strip_prefix(prefix).unwrap_or(id);
    }
    let (body, version) = match id.rsplit_once(';') {
        Some((body, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => {
            (body, Some(v))
        }
        _ => (id, None),
    };
    let mut raw = body.to_owned();
    if let Some(v) = version.filter(|v| *v != "1") {
        raw.push_str("-v");
        raw.push_str(v);
    }
    let name = sanitize(&raw);
    if name.is_empty() {
        return Err(NameError::Empty {
            value: dtmi.to_owned(),
        });
    }
    Ok(bounded(&name, MAX_NAME_LEN))
}

/// Lower-cases and maps every run of non-`[a-z0-9]` characters to one `-`, trimmed, with an
/// `x-` prefix when the result would start with a digit.
pub fn sanitize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "x-");
    }
    out
}

/// `name` if it fits in `max` characters, otherwise its first `max - 9` characters (without a
/// trailing `-`) plus `-` and 8 hex digits of its SHA-256. `name` must be ASCII.
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = max.saturating_sub(HASH_LEN + 1);
    let head = name[..keep.min(name.len())].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// Checks that `name` is a DNS-1035 label: 1 to 63 characters, lower-case letters, digits and
/// `-`, starting with a letter and ending with a letter or digit.
pub fn validate_dns1035(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty {
            value: name.to_owned(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            value: name.to_owned(),
            len: name.len(),
        });
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid_chars || !starts || name.ends_with('-') {
        return Err(NameError::Invalid {
            value: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: Option<&str> = Some("dtmi:digitaltwins:");

    #[test]
    fn smart_city_ids_match_the_original_names() {
        let cases = [
            (
                "dtmi:digitaltwins:ngsi_ld:city:AirQualityObserved;1",
                "ngsi-ld-city-airqualityobserved",
            ),
            ("dtmi:digitaltwins:city:Pole;1", "city-pole"),
            (
                "dtmi:digitaltwins:s4city:city:Neighborhood;1",
                "s4city-city-neighborhood",
            ),
            ("dtmi:digitaltwins:GeoSPARQL:Feature;1", "geosparql-feature"),
        ];
        for (id, want) in cases {
            assert_eq!(interface_name(id, PREFIX).unwrap(), want, "{id}");
        }
    }

    #[test]
    fn original_short_ids_and_unstripped_dtmis() {
        assert_eq!(interface_name("city:Pole", PREFIX).unwrap(), "city-pole");
        assert_eq!(interface_name("dtmi:com:x;1", None).unwrap(), "dtmi-com-x");
        assert_eq!(
            interface_name("dtmi:com:x;2", None).unwrap(),
            "dtmi-com-x-v2"
        );
        assert_eq!(
            interface_name("dtmi:com:9lives;1", Some("dtmi:com:")).unwrap(),
            "x-9lives"
        );
        assert!(matches!(
            interface_name(";1", None),
            Err(NameError::Empty { .. })
        ));
    }

    #[test]
    fn long_names_are_hash_truncated_and_stay_distinct() {
        let a = interface_name(&format!("dtmi:x:{}A;1", "Long".repeat(20)), None).unwrap();
        let b = interface_name(&format!("dtmi:x:{}B;1", "Long".repeat(20)), None).unwrap();
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        validate_dns1035(&a).unwrap();
        validate_dns1035(&b).unwrap();
    }

    #[test]
    fn dns1035_validation() {
        validate_dns1035("city-pole-001").unwrap();
        for bad in ["", "1abc", "a_b", "Abc", "abc-", &"a".repeat(64)] {
            assert!(validate_dns1035(bad).is_err(), "{bad}");
        }
    }
}
