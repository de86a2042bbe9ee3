//! Paths of the repository and of the read-only data beside it.

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|err| panic!("the workspace root cannot be resolved: {err}"))
}

/// The smart-city example project (`examples/smart-city`).
pub fn example_project() -> PathBuf {
    workspace_root().join("examples/smart-city")
}

/// `relative` inside `../shared`, the read-only corpora and schemas.
///
/// In a user's clone the folder may be absent: the caller then skips, and this says so loudly.
/// When `CI` is set it must be there, so a missing folder fails the test instead of letting it
/// pass without checking anything.
///
/// # Panics
/// When the path is absent and the `CI` environment variable is set.
pub fn shared(relative: &str) -> Option<PathBuf> {
    let path = workspace_root().join("../shared").join(relative);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is absent, and CI is set: the shared corpora must be mounted in CI",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is absent (the shared corpora are not mounted in this clone)",
        path.display()
    );
    None
}
