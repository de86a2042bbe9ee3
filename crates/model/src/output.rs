//! Deterministic YAML/JSON rendering of resources and writing of output trees.

use std::path::Path;

use serde::Serialize;

/// One resource as a YAML document (fields in declaration order, absent fields omitted, so
/// there is no `creationTimestamp: null` or `status: {}` noise).
pub fn to_yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(value)?)
}

/// Several resources as one multi-document YAML stream.
pub fn to_yaml_stream<'a, T: Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(v)?);
    }
    Ok(out)
}

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The CRDs as `deploy/crds/` holds them: file name → YAML.
pub fn crd_files() -> anyhow::Result<Vec<(String, String)>> {
    crate::crd::all_crds()
        .iter()
        .map(|crd| Ok((crate::crd::crd_file_name(crd), to_yaml(crd)?)))
        .collect()
}
