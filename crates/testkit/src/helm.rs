//! Rendering a Helm chart without Helm (which cannot run on the test machines) for the subset
//! of the template language ktwin's generated chart uses, so tests can check that the chart
//! yields exactly the objects `ktwin install --render` does:
//!
//! - `{{- if .Values.<path> }}` … `{{- end }}` on lines of their own;
//! - `{{ toJson .Values.<path> }}`, `{{ .Values.<path> | toString | toJson }}`,
//!   `{{ .Values.<path> | toJson | toJson }}`, `{{ .Release.Namespace | toJson }}` and
//!   `{{ printf "%s:%s" .Values.<a> .Values.<b> | toJson }}`.
//!
//! Anything else panics: a template the generator did not mean to produce.

use std::path::Path;

use serde_json::Value;

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    let pointer = format!("/{}", path.replace('.', "/"));
    values
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("values have no {path}"))
}

fn values_path(token: &str) -> &str {
    token
        .strip_prefix(".Values.")
        .unwrap_or_else(|| panic!("expected .Values.<path>, got {token:?}"))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates one `{{ … }}` expression.
fn evaluate(expression: &str, values: &Value, release_namespace: &str) -> String {
    let json = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let words: Vec<&str> = expression.split_whitespace().collect();
    match words.as_slice() {
        ["toJson", path] => json(lookup(values, values_path(path))),
        [path, "|", "toString", "|", "toJson"] => {
            json(&Value::String(text_of(lookup(values, values_path(path)))))
        }
        [path, "|", "toJson", "|", "toJson"] => {
            json(&Value::String(json(lookup(values, values_path(path)))))
        }
        [".Release.Namespace", "|", "toJson"] => json(&Value::String(release_namespace.into())),
        ["printf", "\"%s:%s\"", a, b, "|", "toJson"] => {
            let a = text_of(lookup(values, values_path(a)));
            let b = text_of(lookup(values, values_path(b)));
            json(&Value::String(format!("{a}:{b}")))
        }
        _ => panic!("unsupported template expression {{{{ {expression} }}}}"),
    }
}

/// Renders one template's text.
pub fn render_template(text: &str, values: &Value, release_namespace: &str) -> String {
    let mut out = String::new();
    let mut enabled: Vec<bool> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(condition) = trimmed
            .strip_prefix("{{- if ")
            .and_then(|rest| rest.strip_suffix("}}"))
        {
            let truthy = match lookup(values, values_path(condition.trim())) {
                Value::Bool(b) => *b,
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            enabled.push(truthy);
            continue;
        }
        if trimmed == "{{- end }}" {
            enabled
                .pop()
                .unwrap_or_else(|| panic!("unbalanced {{{{- end }}}}"));
            continue;
        }
        if !enabled.iter().all(|e| *e) {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("unclosed expression in {line:?}"))
                + start;
            out.push_str(&evaluate(
                rest[start + 2..end].trim(),
                values,
                release_namespace,
            ));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    assert!(enabled.is_empty(), "unclosed {{{{- if }}}}");
    out
}

/// Every object the chart in `chart` yields with `values` (the chart's `values.yaml` when
/// `None`) in release namespace `release_namespace`: its `templates/` and its `crds/`.
pub fn render_chart(chart: &Path, values: Option<&Value>, release_namespace: &str) -> Vec<Value> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let defaults: Value = serde_yaml_ng::from_str(&read(&chart.join("values.yaml")))
        .unwrap_or_else(|e| panic!("values.yaml: {e}"));
    let values = values.unwrap_or(&defaults);
    let mut texts = Vec::new();
    for dir in ["crds", "templates"] {
        let mut files: Vec<_> = std::fs::read_dir(chart.join(dir))
            .unwrap_or_else(|e| panic!("{}/{dir}: {e}", chart.display()))
            .map(|entry| entry.map(|e| e.path()).unwrap_or_default())
            .collect();
        files.sort();
        for file in files {
            let text = read(&file);
            texts.push(if dir == "crds" {
                text
            } else {
                render_template(&text, values, release_namespace)
            });
        }
    }
    let mut objects = Vec::new();
    for text in texts {
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("rendered chart is not YAML: {e}\n{text}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}
