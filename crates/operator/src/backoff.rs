//! How long a failed reconcile waits before the next try: a base delay by the kind of failure
//! (a conflict is retried at once, a refusal rarely, a missing object or API after a minute,
//! anything else after a short pause), doubled for each consecutive failure of the same object
//! and capped, so one object failing for hours costs a request every few minutes, not every few
//! seconds, while a new failure is still retried quickly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::controller::Error;

/// The longest wait between two tries of a failing object (unless its base is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The first wait after a failure: a conflict (409, or a failed `test` of the finalizer
/// helper's JSON patch: someone wrote in between) at once; a refusal (400/403/422: admission or schema) cannot succeed before something changes, and the
/// watches bring that change, so rarely; 404 (an object or API not there yet) after a minute;
/// anything else (the API server or a dependency failing) after a short pause.
pub fn base_delay(error: &Error) -> Duration {
    match error.status_code() {
        _ if error.is_conflict() => Duration::from_secs(1),
        _ if error.is_refusal() => Duration::from_secs(300),
        Some(404) => Duration::from_secs(60),
        _ => Duration::from_secs(15),
    }
}

/// The wait after the `failures`-th consecutive failure (1 for the first): the base delay
/// doubled per earlier failure, at most [`MAX_BACKOFF`] (or the base, if longer).
pub fn retry_after(error: &Error, failures: u32) -> Duration {
    let base = base_delay(error);
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF.max(base))
}

/// Consecutive failed reconciles per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of the object `key` (e.g. `TwinInterface/ns/name`) and returns how
    /// long to wait before trying it again.
    pub fn failed(&self, key: &str, error: &Error) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        retry_after(error, *count)
    }

    /// Forgets the failures of `key`: it reconciled.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Error {
        let status = kube::core::Status::failure("refused", "Invalid").with_code(code);
        Error::Kube {
            action: "applying".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn conflicts_retry_at_once_refusals_rarely() {
        assert_eq!(retry_after(&api_error(409), 1), Duration::from_secs(1));
        for refused in [400, 403, 422] {
            assert_eq!(
                retry_after(&api_error(refused), 1),
                Duration::from_secs(300)
            );
        }
        assert_eq!(retry_after(&api_error(404), 1), Duration::from_secs(60));
        assert_eq!(retry_after(&api_error(500), 1), Duration::from_secs(15));
        let children = Error::Children(vec![crate::controller::ChildError::Foreign {
            object: "Binding/b".into(),
            owner: "TwinInterface/other".into(),
        }]);
        assert_eq!(retry_after(&children, 1), Duration::from_secs(300));
        // The finalizer helper's JSON patch tests the finalizers it read: a failed test (422)
        // is a stale read, retried like a conflict, not a refusal.
        let stale = |code: u16| {
            let status = kube::core::Status::failure("testing value failed", "Invalid");
            let source = kube::Error::Api(Box::new(status.with_code(code)));
            Error::Finalizer(kube::runtime::finalizer::Error::AddFinalizer(source))
        };
        assert_eq!(retry_after(&stale(422), 1), Duration::from_secs(1));
        assert_eq!(retry_after(&stale(409), 1), Duration::from_secs(1));
        assert_eq!(retry_after(&stale(404), 1), Duration::from_secs(60));
    }

    #[test]
    fn each_object_backs_off_exponentially_until_it_succeeds() {
        let backoff = Backoff::default();
        let conflict = api_error(409);
        let waits: Vec<u64> = (0..12)
            .map(|_| backoff.failed("TwinInterface/ktwin/a", &conflict).as_secs())
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600],
            "doubling from the 409 base, capped"
        );
        // Another object's failures are its own.
        assert_eq!(
            backoff.failed("TwinInterface/ktwin/b", &conflict).as_secs(),
            1
        );
        assert_eq!(
            backoff
                .failed("TwinInterface/ktwin/b", &api_error(500))
                .as_secs(),
            30,
            "the second failure doubles the base of its own kind"
        );
        backoff.succeeded("TwinInterface/ktwin/a");
        assert_eq!(
            backoff.failed("TwinInterface/ktwin/a", &conflict).as_secs(),
            1
        );
        // A refusal starts at 5 minutes and is never retried more rarely than 10.
        let refusal = api_error(422);
        let waits: Vec<u64> = (0..3)
            .map(|_| backoff.failed("Gateway/ktwin/g", &refusal).as_secs())
            .collect();
        assert_eq!(waits, [300, 600, 600]);
    }
}
