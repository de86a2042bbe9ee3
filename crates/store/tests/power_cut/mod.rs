//! A simulated power cut for the crash test: a process runs with `sync_log.c` preloaded
//! ([`SyncLog::environment`]), is killed, and [`SyncLog::cut`] then takes back from its files
//! every byte written after the file's last `fsync`/`fdatasync`, as a power cut with the disk's
//! cache lost would. A SIGKILL alone keeps the page cache, so it cannot tell a store that syncs
//! before acknowledging from one that does not.
//!
//! fjall preallocates its journal (64 MiB of zeros, then written from the start), so its size
//! says nothing about what was synced: the cut zeroes the unsynced ranges inside a file's synced
//! size (the journal's zeros are what they overwrote, and fjall's recovery stops at the first
//! incomplete batch) and truncates the file to that size. A file never synced is emptied.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file, by device and inode (fjall renames files after writing them).
type FileKey = (u64, u64);

/// What a run wrote to one file since its last sync, and the size that sync made durable.
#[derive(Default)]
struct FileLog {
    synced_size: u64,
    unsynced: Vec<(u64, u64)>,
}

/// The preloaded recorder of one store process and where it writes.
pub struct SyncLog {
    library: PathBuf,
    log: PathBuf,
    watched: PathBuf,
}

/// What [`SyncLog::cut`] found and took back.
#[derive(Debug)]
pub struct Cut {
    pub syncs: usize,
    pub files_cut: usize,
    pub bytes_discarded: u64,
}

impl SyncLog {
    /// Compiles the recorder with the machine's C compiler into the test's target directory;
    /// it will record writes and syncs of files under `watched` into `log`.
    pub fn compile(watched: &Path, log: &Path) -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/power_cut/sync_log.c");
        let library = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libktwin_sync_log.so");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .status()
            .expect("cc (the C compiler Rust links with) runs");
        assert!(status.success(), "{} does not compile", source.display());
        Self {
            library,
            log: log.to_owned(),
            watched: watched.to_owned(),
        }
    }

    /// Environment variables that preload the recorder into a child process.
    pub fn environment(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("LD_PRELOAD", self.library.clone()),
            ("KTWIN_SYNC_LOG", self.log.clone()),
            ("KTWIN_SYNC_LOG_DIR", self.watched.clone()),
        ]
    }

    /// Takes back, in every file under the watched directory, what the killed process wrote
    /// after the file's last sync.
    pub fn cut(&self) -> Cut {
        let text = std::fs::read_to_string(&self.log).expect("the recorder wrote its log");
        let mut files: HashMap<FileKey, FileLog> = HashMap::new();
        let mut syncs = 0;
        // A line cut short by the kill ends without a newline and is ignored.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let fields: Vec<u64> = line[1..]
                .split_whitespace()
                .map(|n| n.parse().expect("a number"))
                .collect();
            let file = files.entry((fields[0], fields[1])).or_default();
            match &line[..1] {
                "W" => file.unsynced.push((fields[2], fields[2] + fields[3])),
                "S" => {
                    syncs += 1;
                    file.synced_size = fields[2];
                    file.unsynced.clear();
                }
                other => panic!("unexpected record {other:?} in the sync log"),
            }
        }
        let mut cut = Cut {
            syncs,
            files_cut: 0,
            bytes_discarded: 0,
        };
        for (path, key) in files_under(&self.watched) {
            if let Some(file) = files.get(&key).filter(|f| !f.unsynced.is_empty()) {
                cut.bytes_discarded += discard_unsynced(&path, file);
                cut.files_cut += 1;
            }
        }
        cut
    }
}

/// Zeroes the unsynced ranges of `path` below its synced size and truncates it to that size;
/// returns the bytes discarded.
fn discard_unsynced(path: &Path, log: &FileLog) -> u64 {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut discarded = size.saturating_sub(log.synced_size);
    for &(start, end) in &log.unsynced {
        let end = end.min(log.synced_size).min(size);
        if start < end {
            file.write_all_at(&vec![0; (end - start) as usize], start)
                .unwrap();
            discarded += end - start;
        }
    }
    if size > log.synced_size {
        file.set_len(log.synced_size).unwrap();
    }
    discarded
}

/// Every regular file under `dir`, with its device and inode.
fn files_under(dir: &Path) -> Vec<(PathBuf, FileKey)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            found.extend(files_under(&entry.path()));
        } else if metadata.is_file() {
            found.push((entry.path(), (metadata.dev(), metadata.ino())));
        }
    }
    found
}
