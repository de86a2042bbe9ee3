//! Credentials that follow their file: rotated tokens and device passwords take effect without a
//! restart, whether the file is edited in place or is a Kubernetes Secret whose mount is swapped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::files::{FileError, read_bounded};

/// How often a credential file is checked for changes. Kubernetes itself takes up to a minute
/// to update a mounted Secret, so a few seconds here add little to a rotation.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// A value parsed from a file, replaced whenever the file changes and still parses. A file that
/// turns invalid or disappears keeps the last good value (and is logged): a half-written edit
/// must not lock everyone out.
pub struct Reloading<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// A value that never changes.
    pub fn fixed(value: T) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(value))),
        }
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, value: T) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }

    /// Parses `path` now (failing if it cannot) and then every `interval` while `stop` is not
    /// cancelled, replacing the value when the file's bytes changed and parse.
    pub fn watch<E>(
        path: &Path,
        interval: Duration,
        parse: impl Fn(&[u8]) -> Result<T, E> + Send + Sync + 'static,
        stop: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), E>
    where
        E: From<FileError> + std::fmt::Display + Send + 'static,
    {
        let bytes = read_bounded(path)?;
        let reloading = Self::fixed(parse(&bytes)?);
        let watcher = Watcher {
            path: path.to_owned(),
            last: Sha256::digest(&bytes).into(),
            target: reloading.clone(),
        };
        let task = tokio::spawn(watcher.run(interval, parse, stop));
        Ok((reloading, task))
    }
}

struct Watcher<T> {
    path: PathBuf,
    last: [u8; 32],
    target: Reloading<T>,
}

impl<T: Send + Sync + 'static> Watcher<T> {
    async fn run<E: From<FileError> + std::fmt::Display>(
        mut self,
        interval: Duration,
        parse: impl Fn(&[u8]) -> Result<T, E>,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || read_bounded(&path)).await;
            match read {
                Ok(Ok(bytes)) => self.consider(&bytes, &parse),
                Ok(Err(err)) => {
                    tracing::warn!(%err, "credential file unreadable; keeping the last good one");
                }
                Err(err) => tracing::warn!(%err, "credential file read task failed"),
            }
        }
    }

    fn consider<E: std::fmt::Display>(
        &mut self,
        bytes: &[u8],
        parse: impl Fn(&[u8]) -> Result<T, E>,
    ) {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if digest == self.last {
            return;
        }
        self.last = digest;
        match parse(bytes) {
            Ok(value) => {
                self.target.replace(value);
                metrics::counter!("ktwin_auth_credential_reloads_total").increment(1);
                tracing::info!(path = %self.path.display(), "credential file reloaded");
            }
            Err(err) => {
                metrics::counter!("ktwin_auth_credential_reload_failures_total").increment(1);
                tracing::warn!(path = %self.path.display(), %err, "credential file changed but is invalid; keeping the last good one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenFile, TokenFileError, TokenSet};
    use crate::{Scope, TwinGrant};

    async fn eventually(mut check: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn rotated_tokens_take_effect_and_a_broken_file_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let mut file = TokenFile::default();
        let old = file
            .issue("old", Scope::Read, TwinGrant::all(), None)
            .unwrap();
        file.save(&path).unwrap();
        let stop = CancellationToken::new();
        let (tokens, task) = Reloading::watch(
            &path,
            Duration::from_millis(20),
            TokenSet::parse,
            stop.clone(),
        )
        .unwrap();
        let now = chrono::Utc::now;
        assert!(tokens.current().authenticate(old.expose(), now()).is_ok());

        file.revoke("old");
        let new = file
            .issue("new", Scope::Read, TwinGrant::all(), None)
            .unwrap();
        file.save(&path).unwrap();
        assert!(eventually(|| tokens.current().authenticate(new.expose(), now()).is_ok()).await);
        assert!(tokens.current().authenticate(old.expose(), now()).is_err());

        std::fs::write(&path, "tokens: [{broken").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(tokens.current().authenticate(new.expose(), now()).is_ok());
        stop.cancel();
        task.await.unwrap();
    }

    /// Kubernetes mounts a Secret as `key -> ..data/key`, `..data -> ..<timestamp>/`, and
    /// updates it by renaming a new `..data` link over the old one.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_kubernetes_secret_mount_swapped_atomically_is_followed() {
        use std::os::unix::fs::symlink;
        let mount = tempfile::tempdir().unwrap();
        let write_version = |name: &str, file: &TokenFile| {
            std::fs::create_dir(mount.path().join(name)).unwrap();
            file.save(&mount.path().join(name).join("tokens.yaml"))
                .unwrap();
        };
        let mut file = TokenFile::default();
        let first = file
            .issue("first", Scope::Read, TwinGrant::all(), None)
            .unwrap();
        write_version("..v1", &file);
        symlink("..v1", mount.path().join("..data")).unwrap();
        symlink("..data/tokens.yaml", mount.path().join("tokens.yaml")).unwrap();
        let stop = CancellationToken::new();
        let (tokens, task) = Reloading::watch(
            &mount.path().join("tokens.yaml"),
            Duration::from_millis(20),
            TokenSet::parse,
            stop.clone(),
        )
        .unwrap();

        file.revoke("first");
        let second = file
            .issue("second", Scope::Read, TwinGrant::all(), None)
            .unwrap();
        write_version("..v2", &file);
        symlink("..v2", mount.path().join("..data_tmp")).unwrap();
        std::fs::rename(mount.path().join("..data_tmp"), mount.path().join("..data")).unwrap();
        let now = chrono::Utc::now;
        assert!(
            eventually(|| tokens
                .current()
                .authenticate(second.expose(), now())
                .is_ok())
            .await
        );
        assert!(
            tokens
                .current()
                .authenticate(first.expose(), now())
                .is_err()
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error_at_start() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let err = Reloading::<TokenSet>::watch(
            Path::new("/nonexistent/tokens.yaml"),
            DEFAULT_RELOAD_INTERVAL,
            TokenSet::parse,
            CancellationToken::new(),
        )
        .unwrap_err();
        assert!(matches!(err, TokenFileError::File(_)), "{err}");
    }
}
