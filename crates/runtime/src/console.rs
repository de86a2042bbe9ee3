//! The terminal of `ktwin up`: service output lines with a `[name]` prefix, printed above a
//! live status line when stderr is a terminal and as plain lines otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Shared writer of prefixed lines and the status line. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    status: Arc<Mutex<Option<ProgressBar>>>,
    /// When set, lines are kept here instead of printed (tests, embedding).
    record: Option<Arc<Mutex<Vec<String>>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::plain()
    }
}

impl Console {
    /// Plain lines on stderr, no status line (tests, pipes, `--check`).
    pub fn plain() -> Self {
        Self {
            status: Arc::new(Mutex::new(None)),
            record: None,
        }
    }

    /// A console keeping its lines in memory; read them with [`Console::recorded`].
    pub fn recording() -> Self {
        Self {
            status: Arc::new(Mutex::new(None)),
            record: Some(Arc::new(Mutex::new(Vec::new()))),
        }
    }

    /// The lines a [`Console::recording`] console received, in order.
    pub fn recorded(&self) -> Vec<String> {
        self.record
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// A console with a live status line at the bottom of stderr; indicatif hides it when
    /// stderr is not a terminal, and lines are then printed plainly.
    pub fn with_status_line() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            status: Arc::new(Mutex::new(Some(bar))),
            record: None,
        }
    }

    /// Prints `text` as one line prefixed with `[prefix]`.
    pub fn line(&self, prefix: &str, text: &str) {
        self.print(&format!("[{prefix}] {text}"));
    }

    /// Prints one line above the status line.
    pub fn print(&self, line: &str) {
        if let Some(record) = &self.record {
            record
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_owned());
            return;
        }
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match status.as_ref() {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// Replaces the status line (no-op without one).
    pub fn set_status(&self, status: String) {
        if let Some(bar) = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.set_message(status);
        }
    }

    /// Whether a visible status line is drawn (otherwise callers log status periodically).
    pub fn has_status_line(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|bar| !bar.is_hidden())
    }

    /// Removes the status line (at shutdown).
    pub fn finish(&self) {
        if let Some(bar) = self.status.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
