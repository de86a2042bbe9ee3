//! Reading DTDL documents from files and directories.

use std::path::{Path, PathBuf};

use crate::Document;

/// A file or directory that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
#[non_exhaustive]
pub struct LoadError {
    /// The path that failed (the file, or the directory being listed).
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Reads every `*.json` file under the paths (recursive, sorted); files named directly are
/// taken whatever their extension.
pub fn load_documents(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect_json(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Document::new(path.display().to_string(), text)),
            Err(source) => Err(LoadError { path, source }),
        })
        .collect()
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let error = |source| LoadError {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
