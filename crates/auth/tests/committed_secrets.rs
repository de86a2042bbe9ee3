//! Nothing secret is committed where users copy from: `deploy/` (manifests, chart, image) and
//! `examples/` hold no credentials — passwords and tokens come from Secrets (`secretKeyRef`),
//! generated at install or first start.

use std::path::{Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Build output and local runtime state are not committed.
        if name == "target" || name == ".ktwin" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            text_files(&path, out);
        } else if std::fs::read_to_string(&path).is_ok() {
            out.push(path);
        }
    }
}

/// Why `line` looks like a committed secret, if it does.
fn finding(line: &str) -> Option<&'static str> {
    let lower = line.to_ascii_lowercase();
    if lower.contains("-----begin") && lower.contains("private key-----") {
        return Some("a private key");
    }
    for prefix in ["ktwin_", "ktwind_"] {
        if let Some(at) = line.find(prefix) {
            let rest = &line[at + prefix.len()..];
            let run = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .count();
            if run >= 40 {
                return Some("a ktwin token or device password");
            }
        }
    }
    if url_with_password(line) {
        return Some("a URL with a password");
    }
    literal_credential(&lower).then_some("a literal credential value")
}

/// `scheme://user:password@host`.
fn url_with_password(line: &str) -> bool {
    line.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', ' ', '"', '\'']).next().unwrap_or("");
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
            userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty())
        })
    })
}

/// `password: hunter2`, `"apiKey": "…"` and the like; a reference, a template, an empty value
/// or a nested object is fine.
fn literal_credential(lower: &str) -> bool {
    let trimmed = lower.trim_start().trim_start_matches("- ");
    let Some((key, value)) = trimmed.split_once(':') else {
        return false;
    };
    let key = key.trim().trim_matches('"');
    let sensitive = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "credentials",
    ];
    if !sensitive.iter().any(|word| key.ends_with(word)) {
        return false;
    }
    let value = value
        .trim()
        .trim_end_matches(',')
        .trim_matches('"')
        .trim_matches('\'');
    let harmless = value.is_empty()
        || value.starts_with(['{', '[', '|', '>', '$', '#'])
        || value.starts_with("{{")
        || matches!(value, "null" | "~" | "true" | "false" | "string" | "object");
    !harmless
}

#[test]
fn deploy_and_examples_hold_no_secrets() {
    let root = repository_root();
    let mut files = Vec::new();
    for dir in ["deploy", "examples"] {
        text_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 5,
        "found only {} files under deploy/ and examples/",
        files.len()
    );
    let mut findings = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if let Some(what) = finding(line) {
                findings.push(format!("{}:{}: {what}", file.display(), number + 1));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "committed secrets:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_scanner_finds_what_it_looks_for() {
    let token = format!("ktwin_{}", "a".repeat(43));
    for (line, expected) in [
        ("    password: hunter2", true),
        ("  \"apiKey\": \"abc123\",", true),
        ("  url: amqp://guest:guest@rabbitmq:5672/", true),
        ("-----BEGIN EC PRIVATE KEY-----", true),
        (token.as_str(), true),
        ("    passwordSecretRef:", false),
        ("    password: {{ .Values.password }}", false),
        ("    password: ${RABBITMQ_PASSWORD}", false),
        ("    bearerTokenSecret:", false),
        ("        default: token", false),
        ("  url: amqp://rabbitmq:5672/", false),
    ] {
        assert_eq!(finding(line).is_some(), expected, "{line}");
    }
}
