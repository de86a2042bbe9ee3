//! Runs the official DTDL conformance cases (`../shared/corpora/dtdl/conformance/specification`)
//! and fails below the pass-rate thresholds per DTDL version.

use std::path::PathBuf;

use ktwin_dtdl::conformance;

/// Required pass rates (percent) per DTDL version: every case is classified as it says.
const THRESHOLDS: [(u8, f64); 3] = [(2, 100.0), (3, 100.0), (4, 100.0)];

fn corpus() -> Option<PathBuf> {
    ktwin_testkit::shared("corpora/dtdl/conformance/specification")
}

#[test]
fn conformance_pass_rates_meet_thresholds() {
    let Some(dir) = corpus() else {
        return;
    };
    let summary = conformance::run_dirs(&[dir]).expect("conformance cases load");
    if let Ok(report) = std::env::var("KTWIN_DTDL_FAILURES") {
        let text: String = summary
            .failures
            .iter()
            .map(|f| format!("{}#{} V{}: {}\n", f.file, f.index, f.version, f.reason))
            .collect();
        std::fs::write(report, text).expect("failure report written");
    }
    for (version, (passed, failed)) in &summary.per_version {
        eprintln!(
            "V{version}: {passed} passed, {failed} failed ({:.2}%)",
            summary.rate(*version)
        );
    }
    eprintln!(
        "discouraged-but-valid cases warned about: {}/{}",
        summary.discouraged.0, summary.discouraged.1
    );
    let total = summary.passed() + summary.failed();
    assert!(
        total > 20_000,
        "expected the whole corpus, ran {total} cases"
    );
    for (version, threshold) in THRESHOLDS {
        let rate = summary.rate(version);
        assert!(
            rate >= threshold,
            "DTDL v{version}: {rate:.2}% of cases pass, below the {threshold}% threshold"
        );
    }
}
