//! RBAC as a real API server enforces it, with the permissions the install bundle grants the
//! operator (its ClusterRole and its leader-election Role): a request they do not allow is
//! answered 403 Forbidden, so a reconciler needing more than the bundle grants fails its test.
//! Every allowed call is recorded as (API group, resource[/subresource], verb), so a test can
//! compare what the operator used with what it was granted.

use std::collections::BTreeSet;

use http::Method;
use ktwin_operator::install::{DEFAULT_OPERATOR_NAMESPACE, InstallValues, install_bundle};
use serde_json::Value;

/// One API call as RBAC sees it: (group, resource or resource/subresource, verb).
pub type Call = (String, String, String);

/// The call a request makes.
pub fn call_of(method: &Method, path: &str, query: &str) -> Call {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, base) = if segments[0] == "api" {
        (String::new(), 2)
    } else {
        (segments[1].to_owned(), 3)
    };
    let at = if segments.get(base) == Some(&"namespaces") {
        base + 2
    } else {
        base
    };
    let named = segments.get(at + 1).is_some();
    let resource = match segments.get(at + 2) {
        Some(sub) => format!("{}/{sub}", segments[at]),
        None => segments[at].to_owned(),
    };
    let watching = query.split('&').any(|pair| pair == "watch=true");
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    (group, resource, verb.to_owned())
}

/// The rules of the operator's ClusterRole and Role in the default install bundle.
pub fn granted_rules() -> Vec<Value> {
    let bundle = install_bundle(&InstallValues::default(), DEFAULT_OPERATOR_NAMESPACE)
        .expect("the default bundle renders");
    bundle
        .into_iter()
        .filter(|o| {
            o["apiVersion"] == "rbac.authorization.k8s.io/v1"
                && matches!(o["kind"].as_str(), Some("ClusterRole" | "Role"))
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with("ktwin-operator"))
        })
        .flat_map(|role| role["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Every (group, resource, verb) the rules grant, spelled out (no wildcards are granted).
pub fn granted_calls(rules: &[Value]) -> BTreeSet<Call> {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let mut calls = BTreeSet::new();
    for rule in rules {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    calls.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    calls
}
