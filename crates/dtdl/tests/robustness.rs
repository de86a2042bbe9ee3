//! No input panics the parser: every JSON model under `../shared` (the conformance cases'
//! inputs, the corpora, the JSON examples embedded in the specification documents of DTDL and
//! of every extension), and mutations of them.
//!
//! The mutation run is an in-process fuzzer (proptest over mutated seeds; `fuzz/` holds the
//! libFuzzer target, which needs a nightly toolchain). It runs for `KTWIN_DTDL_FUZZ_SECS`
//! seconds (default 10; `scripts/test.sh` gives it longer).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ktwin_dtdl::{ParseOptions, parse_values};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// One model set to parse: where it came from and its documents.
#[derive(Debug, Clone)]
struct Seed {
    origin: String,
    documents: Vec<Value>,
}

fn files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
    out.sort();
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim_start_matches('\u{feff}')).ok()
}

/// The inputs of every conformance case.
fn conformance_seeds(root: &Path, out: &mut Vec<Seed>) {
    let mut paths = Vec::new();
    files(&root.join("corpora/dtdl/conformance"), "json", &mut paths);
    for path in paths {
        let Some(Value::Array(cases)) = read_json(&path) else {
            continue;
        };
        for (i, case) in cases.into_iter().enumerate() {
            if let Some(Value::Array(documents)) = case.get("input").cloned() {
                out.push(Seed {
                    origin: format!("{}#{i}", path.display()),
                    documents,
                });
            }
        }
    }
}

/// Every other JSON file under `../shared` as a document of its own, and each corpus folder
/// as one model set.
fn file_seeds(root: &Path, out: &mut Vec<Seed>) {
    let mut paths = Vec::new();
    files(root, "json", &mut paths);
    let conformance = root.join("corpora/dtdl/conformance");
    for path in paths.iter().filter(|p| !p.starts_with(&conformance)) {
        if let Some(document) = read_json(path) {
            out.push(Seed {
                origin: path.display().to_string(),
                documents: vec![document],
            });
        }
    }
    for corpus in ["smartcities", "ktwin-smartcities"] {
        let dir = root.join("corpora/dtdl").join(corpus);
        let mut set = Vec::new();
        files(&dir, "json", &mut set);
        out.push(Seed {
            origin: dir.display().to_string(),
            documents: set.iter().filter_map(|p| read_json(p)).collect(),
        });
    }
}

/// The JSON code blocks of every Markdown document under `../shared/specs`.
fn markdown_seeds(root: &Path, out: &mut Vec<Seed>) -> usize {
    let mut paths = Vec::new();
    files(&root.join("specs"), "md", &mut paths);
    let before = out.len();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut block: Option<(usize, String)> = None;
        for (line_no, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start().starts_with("```json") => {
                    block = Some((line_no + 1, String::new()));
                }
                Some((start, body)) if line.trim_start().starts_with("```") => {
                    if let Ok(document) = serde_json::from_str::<Value>(body) {
                        out.push(Seed {
                            origin: format!("{}:{start}", path.display()),
                            documents: vec![document],
                        });
                    }
                    block = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    out.len() - before
}

fn all_seeds() -> Option<(Vec<Seed>, usize)> {
    let root = ktwin_testkit::shared("")?;
    let mut seeds = Vec::new();
    conformance_seeds(&root, &mut seeds);
    file_seeds(&root, &mut seeds);
    let from_markdown = markdown_seeds(&root, &mut seeds);
    Some((seeds, from_markdown))
}

const STRICT: ParseOptions = ParseOptions {
    allow_undefined_extensions: false,
    lenient_ids: false,
    max_dtdl_version: None,
};
const LENIENT: ParseOptions = ParseOptions {
    allow_undefined_extensions: true,
    lenient_ids: true,
    max_dtdl_version: None,
};

/// Parses the documents under both option sets; `Err` holds the panic message.
fn parse_without_panic(documents: &[Value]) -> Result<(), String> {
    let named: Vec<(String, Value)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("input[{i}]"), d.clone()))
        .collect();
    for options in [&STRICT, &LENIENT] {
        catch_unwind(AssertUnwindSafe(|| drop(parse_values(&named, options)))).map_err(
            |panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            },
        )?;
    }
    Ok(())
}

#[test]
fn no_model_under_shared_panics() {
    let Some((seeds, from_markdown)) = all_seeds() else {
        return;
    };
    assert!(seeds.len() > 20_000, "found only {} seeds", seeds.len());
    assert!(
        from_markdown > 150,
        "found only {from_markdown} JSON examples in the specification documents"
    );
    let panics: Vec<String> = seeds
        .iter()
        .filter_map(|seed| {
            parse_without_panic(&seed.documents)
                .err()
                .map(|message| format!("{}: {message}", seed.origin))
        })
        .collect();
    assert!(
        panics.is_empty(),
        "{} inputs panic the parser:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

/// Every interface extends the two before it: the number of inheritance paths grows like the
/// Fibonacci numbers, so any walk that follows paths instead of visiting each interface once
/// never returns. Long chains of interfaces and schemas must not exhaust the stack either.
#[test]
fn inheritance_lattices_and_long_chains_are_walked_once() {
    let interface = |i: usize, extends: Vec<String>| {
        serde_json::json!({
            "@context": "dtmi:dtdl:context;2",
            "@id": format!("dtmi:test:lattice:I{i};1"),
            "@type": "Interface",
            "extends": extends,
        })
    };
    let lattice: Vec<(String, Value)> = (0..300usize)
        .map(|i| {
            let parents = (i.saturating_sub(2)..i)
                .map(|p| format!("dtmi:test:lattice:I{p};1"))
                .collect();
            (format!("i{i}"), interface(i, parents))
        })
        .collect();
    let err = parse_values(&lattice, &STRICT).expect_err("the lattice is too deep");
    assert!(err.errors().any(|d| d.short_id() == "excessiveDepthNarrow"));

    let chain: Vec<(String, Value)> = (0..20_000usize)
        .map(|i| {
            let parents = i
                .checked_sub(1)
                .map(|p| vec![format!("dtmi:test:lattice:I{p};1")])
                .unwrap_or_default();
            (format!("i{i}"), interface(i, parents))
        })
        .collect();
    let err = parse_values(&chain, &STRICT).expect_err("the chain is too deep");
    assert!(err.errors().any(|d| d.short_id() == "excessiveDepthNarrow"));

    let schemas: Vec<Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({
                "@id": format!("dtmi:test:chain:S{i};1"),
                "@type": "Array",
                "elementSchema": if i == 0 { "string".to_string() } else { format!("dtmi:test:chain:S{};1", i - 1) },
            })
        })
        .collect();
    let document = serde_json::json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:test:chain:Holder;1",
        "@type": "Interface",
        "schemas": schemas,
    });
    let err = parse_values(&[("chain".into(), document)], &STRICT).expect_err("too deep");
    assert!(err.errors().any(|d| d.short_id() == "excessiveDepthWide"));
}

/// One edit of a document tree, chosen by the fuzzer.
#[derive(Debug, Clone)]
struct Mutation {
    /// Which node (modulo the number of nodes) the edit applies to.
    target: usize,
    /// Which node, string or literal (modulo their number) the edit uses.
    source: usize,
    kind: u8,
}

fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn literal(n: usize) -> Value {
    let literals = [
        Value::Null,
        Value::Bool(true),
        Value::from(0),
        Value::from(-1),
        Value::from(1.5),
        Value::from(i64::MAX),
        Value::from(u64::MAX),
        Value::from(1e300),
        Value::from(""),
        Value::from("dtmi:dtdl:extension:mqtt;4"),
        Value::from("dtmi:dtdl:context;4#limitless"),
        Value::from("dtmi:dtdl:limits:aio;1"),
        Value::from("dtmi:x:y;1.1"),
        Value::from("{a:b}/{c}/+/#"),
        Value::from("P1.5DT"),
        Value::from("x".repeat(600)),
        serde_json::json!({}),
        serde_json::json!([]),
        serde_json::json!({"@value": 1, "@type": "xsd:integer"}),
        serde_json::json!({"en": "x", "@language": "y"}),
    ];
    literals[n % literals.len()].clone()
}

/// Applies the edits; edits whose target vanished under an earlier edit are skipped.
fn mutate(documents: &mut [Value], mutations: &[Mutation]) {
    for m in mutations {
        let doc = m.target % documents.len();
        let mut nodes = Vec::new();
        pointers(&documents[doc], String::new(), &mut nodes);
        let mut words = Vec::new();
        strings(&documents[doc], &mut words);
        let target = nodes[m.target % nodes.len()].clone();
        let donor = documents[doc]
            .pointer(&nodes[m.source % nodes.len()])
            .cloned()
            .unwrap_or(Value::Null);
        let word = words
            .get(m.source % words.len().max(1))
            .cloned()
            .unwrap_or_default();
        let Some(node) = documents[doc].pointer_mut(&target) else {
            continue;
        };
        match (m.kind % 8, node) {
            (0, node) => *node = literal(m.source),
            (1, node) => *node = Value::String(word),
            (2, Value::Object(map)) if !map.is_empty() => {
                let key = map.keys().nth(m.source % map.len()).cloned();
                key.map(|k| map.shift_remove(&k));
            }
            (2, Value::Array(items)) if !items.is_empty() => {
                items.remove(m.source % items.len());
            }
            (3, Value::Object(map)) => {
                map.insert(word, donor);
            }
            (4, node) => *node = donor,
            (5, node) => *node = Value::Array(vec![node.take()]),
            (6, Value::Object(map)) if !map.is_empty() => {
                let key = map.keys().nth(m.source % map.len()).cloned();
                if let Some(v) = key.and_then(|k| map.shift_remove(&k)) {
                    map.insert(word, v);
                }
            }
            (7, Value::Array(items)) if !items.is_empty() => {
                let copy = items[m.source % items.len()].clone();
                items.push(copy);
            }
            _ => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(target, source, kind)| Mutation {
        target,
        source,
        kind,
    })
}

#[test]
fn mutated_models_never_panic() {
    let Some((seeds, _)) = all_seeds() else {
        return;
    };
    let seeds: Vec<Seed> = seeds
        .into_iter()
        .filter(|s| !s.documents.is_empty() && !s.origin.contains("metamodel"))
        .collect();
    let budget = std::env::var("KTWIN_DTDL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let deadline = Instant::now() + Duration::from_secs(budget);
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..8));
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        // A runner runs its cases once: later `run` calls on it return at once, so each round
        // takes a new one (with a new random seed).
        let mut runner = TestRunner::new(config.clone());
        let outcome = runner.run(&strategy, |(seed, mutations)| {
            let mut documents = seeds[seed].documents.clone();
            mutate(&mut documents, &mutations);
            parse_without_panic(&documents).map_err(|message| {
                TestCaseError::fail(format!(
                    "{} mutated by {mutations:?} panics: {message}\n{}",
                    seeds[seed].origin,
                    serde_json::to_string(&documents).unwrap_or_default()
                ))
            })
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
        rounds += 1;
    }
    eprintln!(
        "{} mutated model sets parsed without a panic in {budget} s",
        rounds * 256
    );
}
