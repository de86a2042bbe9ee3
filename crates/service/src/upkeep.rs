//! Upkeep of the Prometheus recorder: its histograms keep every recorded sample until they are
//! folded into their buckets, which a scrape of `/metrics` or [`PrometheusHandle::run_upkeep`]
//! does. ktwin builds the recorder itself (one per process, shared by every service in it), so
//! no exporter runs that upkeep: a process nobody scrapes grew by every latency it recorded —
//! the steady RSS growth of `ktwin bench soak` (docs/benchmarks.md, "Soak").

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// How often the process's recorder folds pending histogram samples into their buckets.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `handle`'s upkeep every `every`, for as long as the process lives, on a thread of its
/// own (the recorder is process-wide and may be set up before or without a tokio runtime).
pub(crate) fn spawn_upkeep(handle: PrometheusHandle, every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// Resident memory of this process, bytes.
    fn rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    #[test]
    fn histograms_nobody_scrapes_stay_bounded() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[1.0, 10.0])
            .unwrap()
            .build_recorder();
        spawn_upkeep(recorder.handle(), Duration::from_millis(5)).unwrap();
        let before = rss();
        // 16 million samples: about 256 MB (16 bytes each) if they were all kept until a
        // scrape. The bound leaves room for what the crate's other tests, running beside this
        // one in the same process, allocate meanwhile.
        metrics::with_local_recorder(&recorder, || {
            let histogram = metrics::histogram!("ktwin_upkeep_test_seconds");
            for _ in 0..160 {
                for i in 0..100_000u32 {
                    histogram.record(f64::from(i % 20));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let grown = rss().saturating_sub(before);
        assert!(
            grown < 64 * 1024 * 1024,
            "RSS grew by {} MB over 16 million unscraped samples",
            grown / (1024 * 1024)
        );
        // The upkeep folds samples into the buckets rather than dropping them: nearly all are
        // counted. Not all: metrics-util's concurrent drain loses a sample pushed into a block
        // it has already read, which at this test's 5 ms upkeep (a thousand times the real
        // one's rate) was 1 in 16 million on a quiet machine and 2 % with a soak beside the
        // test on two cores. Dropping them wholesale would count next to nothing.
        let text = recorder.handle().render();
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("ktwin_upkeep_test_seconds_count "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in {text}"));
        assert!(
            (15_200_000..=16_000_000).contains(&count),
            "{count} of 16 million counted"
        );
    }
}
