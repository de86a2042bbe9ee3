//! Reading and writing the small files credentials live in: bounded reads (a mounted Secret is
//! not trusted to be small) and private, atomic writes.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Largest credential file read: far above any real token or device list, small enough that a
/// wrong path (a log file, a device) cannot exhaust memory.
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A credential file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CREDENTIAL_FILE_BYTES`].
    #[error("{}: larger than {MAX_CREDENTIAL_FILE_BYTES} bytes; not a credential file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path` whole, refusing files over [`MAX_CREDENTIAL_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600 on Unix), atomically: a
/// reader (or a reload) sees the old file or the new one, never half of it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        FileError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(read_bounded(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn oversized_and_missing_files_are_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_CREDENTIAL_FILE_BYTES as usize + 1]).unwrap();
        let err = read_bounded(&big).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
        let err = read_bounded(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }
}
