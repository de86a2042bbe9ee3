//! Helpers shared by the store's integration tests: embedded stores, scratch PostgreSQL
//! databases (from `ktwin_testkit`) and an independent merge-patch implementation to check the
//! store against.

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::Arc;

use ktwin_store::{Backend, BackendChoice};
use serde_json::{Map, Value};

/// Name of the fjall store (a directory) in a test's folder.
pub const FJALL: &str = "store";
/// Name of the redb store (a file) in a test's folder.
pub const REDB: &str = "store.redb";

/// Opens the embedded store `name` ([`FJALL`] or [`REDB`]) in `dir`, checking the engine.
pub async fn open_embedded(dir: &Path, name: &str) -> Arc<dyn Backend> {
    let backend = BackendChoice::Embedded(dir.join(name))
        .open()
        .await
        .unwrap();
    let engine = if name == REDB { "redb" } else { "fjall" };
    assert_eq!(backend.name(), engine);
    backend
}

pub use ktwin_testkit::ScratchDb;

/// RFC 7386, written independently of the store's implementation.
pub fn reference_merge(target: Value, patch: &Value) -> Value {
    match patch {
        Value::Object(patch_members) => {
            let mut result = match target {
                Value::Object(members) => members,
                _ => Map::new(),
            };
            for (name, value) in patch_members {
                if value.is_null() {
                    result.remove(name);
                } else {
                    let current = result.remove(name).unwrap_or(Value::Null);
                    result.insert(name.clone(), reference_merge(current, value));
                }
            }
            Value::Object(result)
        }
        other => other.clone(),
    }
}

/// SplitMix64: a deterministic hash of an index, so events can be regenerated on demand.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
