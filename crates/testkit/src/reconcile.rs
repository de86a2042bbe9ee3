//! Driving a Kubernetes controller's reconcile in a test the way its watch would.

use std::future::Future;

use serde_json::Value;

/// The most reconciles [`until_settled`] runs before it calls the object unsettled.
const MAX_RECONCILES: usize = 8;

/// Reconciles the object `read` returns (as the API server stores it) until a reconcile leaves
/// its `metadata.finalizers` as it found them, or the object is gone; returns that last
/// reconcile's result.
///
/// kube's finalizer helper ends the reconcile that adds (or removes) a finalizer there: on a
/// cluster, that change wakes the next reconcile through the watch, which then applies.
///
/// # Panics
/// When there is no object to reconcile, or it never settles.
pub async fn until_settled<R, Fut>(
    read: impl Fn() -> Option<Value>,
    mut reconcile: impl FnMut(Value) -> Fut,
) -> R
where
    Fut: Future<Output = R>,
{
    for _ in 0..MAX_RECONCILES {
        let object = read().expect("the object to reconcile");
        let result = reconcile(object.clone()).await;
        match read() {
            Some(now) if now["metadata"]["finalizers"] != object["metadata"]["finalizers"] => {}
            _ => return result,
        }
    }
    panic!("the object's finalizers still change after {MAX_RECONCILES} reconciles");
}
