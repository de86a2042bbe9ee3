//! Parser throughput on the 63-file smart-cities ontology and on the whole conformance folder.
//! Run: `cargo bench -p ktwin-dtdl --bench parse` (needs `../shared/corpora/dtdl`).

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use ktwin_dtdl::{ParseOptions, conformance, load_documents, parse};

fn corpus(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpora/dtdl/"
    ))
    .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: corpus {} not found", dir.display());
        None
    }
}

fn smartcities(c: &mut Criterion) {
    let Some(dir) = corpus("smartcities") else {
        return;
    };
    let docs = load_documents(&[dir]).expect("corpus readable");
    let options = ParseOptions::default();
    // The embedded metamodel is decoded once per process; keep that out of the measurement.
    parse(&docs, &options).expect("smartcities is valid");
    c.bench_function("smartcities_63_files", |b| {
        b.iter(|| parse(&docs, &options).expect("valid"));
    });
}

fn conformance_folder(c: &mut Criterion) {
    let Some(dir) = corpus("conformance/specification") else {
        return;
    };
    let files: Vec<(String, String)> = conformance::case_files(&[dir])
        .expect("listing")
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            (name, std::fs::read_to_string(&f).expect("readable"))
        })
        .collect();
    let mut group = c.benchmark_group("conformance");
    group.sample_size(10);
    group.bench_function("all_cases", |b| {
        b.iter(|| {
            let mut summary = conformance::Summary::default();
            for (name, text) in &files {
                conformance::run_file(&mut summary, name, text).expect("case file");
            }
            assert!(summary.passed() > 20_000);
        });
    });
    group.finish();
}

criterion_group!(benches, smartcities, conformance_folder);
criterion_main!(benches);
