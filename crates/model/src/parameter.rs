//! World parameters given on a command line (`--set neighborhoods=20`).

/// Why a `NAME=VALUE` world parameter does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParameterError {
    /// No `=` in the text.
    #[error("{text:?}: expected NAME=VALUE, e.g. neighborhoods=3")]
    NoValue {
        /// The text given.
        text: String,
    },
    /// Nothing before the `=`.
    #[error("{text:?}: the parameter has no name; expected NAME=VALUE")]
    NoName {
        /// The text given.
        text: String,
    },
    /// The value is not a non-negative integer.
    #[error("{text:?}: the value {value:?} is not a non-negative integer")]
    NotANumber {
        /// The text given.
        text: String,
        /// Its value part.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
}

/// Parses `NAME=VALUE` (spaces around either part ignored) into a world parameter.
pub fn parse_parameter(text: &str) -> Result<(String, u64), ParameterError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| ParameterError::NoValue {
            text: text.to_owned(),
        })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ParameterError::NoName {
            text: text.to_owned(),
        });
    }
    let value = value.trim();
    let parsed = value.parse().map_err(|source| ParameterError::NotANumber {
        text: text.to_owned(),
        value: value.to_owned(),
        source,
    })?;
    Ok((name.to_owned(), parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_with_clear_errors() {
        assert_eq!(
            parse_parameter(" neighborhoods = 3").unwrap(),
            ("neighborhoods".into(), 3)
        );
        let message = |text: &str| parse_parameter(text).unwrap_err().to_string();
        assert!(message("neighborhoods").contains("NAME=VALUE"));
        assert!(message("=3").contains("no name"));
        assert!(message("n=-1").contains("\"-1\""));
    }
}
