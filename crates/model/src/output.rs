//! Deterministic YAML/JSON rendering of resources and writing of output trees.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file of an output tree that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}", path.display())]
pub struct WriteError {
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// One resource as a YAML document (fields in declaration order, absent fields omitted, so
/// there is no `creationTimestamp: null` or `status: {}` noise).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(value)
}

/// Several resources as one multi-document YAML stream.
pub fn to_yaml_stream<'a, T: Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(v)?);
    }
    Ok(out)
}

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) -> Result<(), WriteError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| WriteError {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| WriteError {
        path: path.to_owned(),
        source,
    })
}

/// The CRDs as `deploy/crds/` holds them: file name → YAML.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crate::crd::all_crds()
        .iter()
        .map(|crd| Ok((crate::crd::crd_file_name(crd), to_yaml(crd)?)))
        .collect()
}
