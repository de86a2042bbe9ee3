//! What the API server does with a custom resource before storing it, for tests: `null` values
//! of fields that are not `nullable` are pruned, absent fields with a default get it, then the
//! object is validated against the CRD's
//! structural schema made strict (a field the schema does not declare is an error here, where
//! the API server would silently prune it, so "accepted" means "accepted unchanged").

use serde_json::{Value, json};

/// The `openAPIV3Schema` of `crd` for `version`, made strict: objects with declared properties
/// reject undeclared ones except where the CRD preserves unknown fields; `nullable` fields also
/// accept `null`; `apiVersion`, `kind` and `metadata` are declared as the API server does.
///
/// # Panics
/// When the CRD does not serve `version` (a test set-up error).
pub fn strict_schema(crd: &Value, version: &str) -> Value {
    let mut schema = crd["spec"]["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["name"] == version))
        .unwrap_or_else(|| panic!("the CRD serves no {version}"))["schema"]["openAPIV3Schema"]
        .clone();
    fn strict(node: &mut Value) {
        if let Value::Object(map) = node {
            let preserve =
                map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties")
                && !preserve
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(type_)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([type_, "null"]));
            }
            for value in map.values_mut() {
                strict(value);
            }
        } else if let Value::Array(items) = node {
            items.iter_mut().for_each(strict);
        }
    }
    // The API server declares these for every object; CRD schemas leave them out.
    for field in ["apiVersion", "kind"] {
        schema["properties"][field] = json!({"type": "string"});
    }
    schema["properties"]["metadata"] = json!({"type": "object"});
    strict(&mut schema);
    schema
}

/// `object` as the API server would store it under `crd` (its non-`nullable` `null` fields
/// pruned, defaults applied), or every validation error (`message at /path`).
///
/// # Panics
/// When `object` has no `apiVersion` or the CRD does not serve its version.
pub fn admit(crd: &Value, object: &Value) -> Result<Value, Vec<String>> {
    let version = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit('/').next())
        .unwrap_or_else(|| panic!("no apiVersion in {object}"));
    let schema = strict_schema(crd, version);
    let mut stored = object.clone();
    prune_nulls(&mut stored, &schema);
    apply_defaults(&mut stored, &schema);
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|err| panic!("the CRD schema does not compile: {err}"));
    let errors: Vec<String> = validator
        .iter_errors(&stored)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(stored)
    } else {
        Err(errors)
    }
}

/// Removes `null` members whose schema is not `nullable` (the API server's pruning of nulls).
fn prune_nulls(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, member| {
                !member.is_null() || member_schema(schema, key)["nullable"] == true
            });
            for (key, member) in map.iter_mut() {
                prune_nulls(member, &member_schema(schema, key));
            }
        }
        Value::Array(items) => {
            for item in items {
                prune_nulls(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

/// Sets every absent property that has a `default` to it, at every level (the API server's
/// structural defaulting).
fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            for (key, property) in schema["properties"].as_object().into_iter().flatten() {
                if !map.contains_key(key)
                    && let Some(default) = property.get("default")
                {
                    map.insert(key.clone(), default.clone());
                }
            }
            for (key, member) in map.iter_mut() {
                apply_defaults(member, &member_schema(schema, key));
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_defaults(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

fn member_schema(schema: &Value, key: &str) -> Value {
    let declared = &schema["properties"][key];
    if declared.is_null() && schema["additionalProperties"].is_object() {
        schema["additionalProperties"].clone()
    } else {
        declared.clone()
    }
}

/// The resources of the original KTWIN (Go) that ktwin must accept unchanged: its scaffold
/// samples (`config/samples`), its `hack/` resources and TwinInterfaces/TwinInstances as its
/// CLI generated them for the smart-city ontology, reconstructed from
/// `../shared/reference/ktwin-operator.md` §2.6, §6 and §7. Each is `(file name, object)`,
/// sorted by file name.
///
/// # Panics
/// When a fixture does not parse (a repository error).
pub fn original_ktwin_resources() -> Vec<(String, Value)> {
    let dir = crate::workspace_root().join("crates/testkit/fixtures/original-ktwin");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}
