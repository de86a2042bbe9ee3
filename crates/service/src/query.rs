//! Query strings of the services' HTTP APIs (`application/x-www-form-urlencoded`), decoded
//! strictly: a broken escape or a value that is not UTF-8 is refused with a clear error rather
//! than passed on half-decoded.

/// Why a query string part cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A `%` is not followed by two hexadecimal digits.
    #[error("bad percent escape in {text:?}")]
    BadEscape {
        /// The part as received.
        text: String,
    },
    /// The decoded bytes are not UTF-8.
    #[error("{text:?} is not UTF-8")]
    NotUtf8 {
        /// The part as received.
        text: String,
    },
}

/// The `key=value` pairs of `query` as received (not decoded), in order; a pair without `=`
/// has an empty value and empty pairs are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The pairs of `query`, keys and values decoded, in order.
pub fn decode_pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query_pairs(query)
        .map(|(key, value)| Ok((percent_decode(key)?, percent_decode(value)?)))
        .collect()
}

/// Decodes one key or value: `%XX` escapes, and `+` as a space.
pub fn percent_decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = text
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| QueryError::BadEscape {
                        text: text.to_owned(),
                    })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8 {
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_split_and_parts_decoded() {
        let pairs: Vec<_> = query_pairs("type=ktwin.real.%2A&&flag&a+b=c%20d").collect();
        assert_eq!(
            pairs,
            [("type", "ktwin.real.%2A"), ("flag", ""), ("a+b", "c%20d")]
        );
        assert_eq!(percent_decode("ktwin.real.%2A").unwrap(), "ktwin.real.*");
        assert_eq!(percent_decode("a+b").unwrap(), "a b");
        assert_eq!(percent_decode("%C3%A9").unwrap(), "é");
    }

    #[test]
    fn query_strings_decode() {
        let pairs = decode_pairs("since=2024-01-01T00%3A00%3A00Z&limit=5&x=a+b").unwrap();
        assert_eq!(pairs[0], ("since".into(), "2024-01-01T00:00:00Z".into()));
        assert_eq!(pairs[2], ("x".into(), "a b".into()));
        assert!(decode_pairs("a=%zz").is_err());
    }

    #[test]
    fn broken_escapes_and_bad_utf8_are_refused() {
        assert_eq!(
            percent_decode("50%").unwrap_err().to_string(),
            r#"bad percent escape in "50%""#
        );
        assert!(matches!(
            percent_decode("%zz"),
            Err(QueryError::BadEscape { .. })
        ));
        assert_eq!(
            percent_decode("%FF").unwrap_err().to_string(),
            r#""%FF" is not UTF-8"#
        );
    }
}
