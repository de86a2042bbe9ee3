//! Knative-like autoscaling of a twin service's replicas, as a pure decision over observed
//! concurrency and time (no clock, no processes: callers pass `now`).
//!
//! The model is Knative's KPA reduced to what one machine needs: the desired replica count is
//! the observed concurrency divided by the per-replica target (times the target utilisation),
//! averaged over a long *stable* window to scale down calmly and over a short *panic* window
//! to scale up quickly; a service with no demand for `scale_to_zero_after` goes to zero (unless
//! `min_scale` says otherwise) and a request for a service at zero starts one replica.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ktwin_planner::{Autoscaling, ScaleMetric};

/// How a service scales, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePolicy {
    /// Replicas kept even without demand (0 allows scale to zero).
    pub min_scale: u32,
    /// Replicas at most.
    pub max_scale: u32,
    /// In-flight requests one replica is meant to handle (the Knative soft target).
    pub target: u32,
    /// Fraction of `target` at which to scale out (Knative `target-utilization-percentage`).
    pub target_utilization: f64,
    /// In-flight requests one replica is given at most; more wait for a free slot.
    pub replica_concurrency: u32,
    /// Window averaged to decide scaling down.
    pub stable_window: Duration,
    /// Window averaged to decide scaling up.
    pub panic_window: Duration,
    /// Time without any demand after which the service goes to `min_scale` (zero by default).
    pub scale_to_zero_after: Duration,
}

impl Default for ScalePolicy {
    fn default() -> Self {
        Self {
            min_scale: 0,
            max_scale: 4,
            target: 10,
            target_utilization: 0.7,
            replica_concurrency: 10,
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            scale_to_zero_after: Duration::from_secs(30),
        }
    }
}

impl ScalePolicy {
    /// The policy a planned service's autoscaling describes, with at most `replica_cap`
    /// replicas on this machine (Knative's `maxScale: 0` means unbounded; a laptop is not).
    ///
    /// Only the concurrency metric exists locally; `rps`, `cpu` and `memory` are scaled on
    /// concurrency with the same target, which [`ScalePolicy::metric_note`] reports.
    pub fn from_autoscaling(autoscaling: &Autoscaling, replica_cap: u32) -> Self {
        let defaults = Self::default();
        let cap = replica_cap.max(1);
        let max_scale = match autoscaling.max_scale {
            None | Some(0) => cap,
            Some(max) => max.min(cap),
        };
        let target = autoscaling.target.unwrap_or(defaults.target).max(1);
        let target_utilization = autoscaling
            .target_utilization_percentage
            .map_or(defaults.target_utilization, |p| {
                f64::from(p.clamp(1, 100)) / 100.0
            });
        Self {
            min_scale: autoscaling.min_scale.unwrap_or(0).min(max_scale),
            max_scale,
            target,
            target_utilization,
            replica_concurrency: target,
            ..defaults
        }
    }

    /// Why the metric of `autoscaling` is not honoured exactly, if it is not.
    pub fn metric_note(autoscaling: &Autoscaling) -> Option<String> {
        match autoscaling.metric {
            None | Some(ScaleMetric::Concurrency) => None,
            Some(other) => Some(format!(
                "autoscaling metric {:?} is not available locally; scaling on concurrency with the same target",
                other.as_str()
            )),
        }
    }

    /// Concurrency per replica at which a new replica is wanted.
    fn effective_target(&self) -> f64 {
        (f64::from(self.target) * self.target_utilization).max(0.01)
    }
}

/// The autoscaler of one service: feed it observations, ask it for the desired replica count.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalePolicy,
    /// (when, concurrency) samples within the stable window, oldest first.
    samples: VecDeque<(Instant, f64)>,
    /// Last time any demand was observed.
    last_demand: Option<Instant>,
}

impl Autoscaler {
    /// An autoscaler with no history.
    pub fn new(policy: ScalePolicy) -> Self {
        Self {
            policy,
            samples: VecDeque::new(),
            last_demand: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ScalePolicy {
        &self.policy
    }

    /// Records the concurrency observed at `now`: requests in flight plus requests waiting for
    /// a replica.
    pub fn observe(&mut self, now: Instant, concurrency: usize) {
        if concurrency > 0 {
            self.last_demand = Some(now);
        }
        // Precision loss only beyond 2^53 requests.
        #[allow(clippy::cast_precision_loss)]
        self.samples.push_back((now, concurrency as f64));
        self.prune(now);
    }

    /// Records demand arriving at `now` without a full observation (a request for a service
    /// with no replica): the service must start.
    pub fn demand(&mut self, now: Instant) {
        self.last_demand = Some(now);
    }

    /// How many replicas the service should have at `now`, given it has `current`.
    pub fn desired(&mut self, now: Instant, current: u32) -> u32 {
        self.prune(now);
        let per_replica = self.policy.effective_target();
        let stable = self.mean_since(now, self.policy.stable_window);
        let panic = self.mean_since(now, self.policy.panic_window);
        let want_stable = replicas_for(stable, per_replica);
        let want_panic = replicas_for(panic, per_replica);
        // Scale up as soon as the short window asks for it; scale down only as far as the long
        // window allows, so a burst does not make replicas come and go.
        let mut desired = if want_panic > current {
            want_panic
        } else {
            want_stable
        };
        let idle_for = self.last_demand.map(|at| now.saturating_duration_since(at));
        let recently_active = idle_for.is_some_and(|idle| idle < self.policy.scale_to_zero_after);
        if desired == 0 && recently_active {
            // Demand seen lately: keep (or start) one replica until the idle period has passed.
            desired = 1;
        }
        desired.clamp(
            self.policy.min_scale,
            self.policy.max_scale.max(self.policy.min_scale),
        )
    }

    fn prune(&mut self, now: Instant) {
        let horizon = self.policy.stable_window.max(self.policy.panic_window);
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) > horizon {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    fn mean_since(&self, now: Instant, window: Duration) -> f64 {
        let (sum, count) = self
            .samples
            .iter()
            .rev()
            .take_while(|(at, _)| now.saturating_duration_since(*at) <= window)
            .fold((0.0, 0u32), |(sum, count), (_, c)| (sum + c, count + 1));
        if count == 0 {
            0.0
        } else {
            sum / f64::from(count)
        }
    }
}

/// Replicas needed to serve `concurrency` at `per_replica` each.
fn replicas_for(concurrency: f64, per_replica: f64) -> u32 {
    if concurrency <= 0.0 {
        return 0;
    }
    let replicas = (concurrency / per_replica).ceil();
    // The value is positive and bounded by u32::MAX before the cast.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let replicas = replicas.min(f64::from(u32::MAX)) as u32;
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: instants at whole seconds after a fixed origin.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }
        fn at(&self, seconds: f64) -> Instant {
            self.0 + Duration::from_secs_f64(seconds)
        }
    }

    fn policy() -> ScalePolicy {
        ScalePolicy {
            min_scale: 0,
            max_scale: 5,
            target: 10,
            target_utilization: 1.0,
            replica_concurrency: 10,
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            scale_to_zero_after: Duration::from_secs(30),
        }
    }

    /// Observes `concurrency` every second from `from` to `to` (inclusive).
    fn feed(scaler: &mut Autoscaler, clock: &Clock, from: u32, to: u32, concurrency: usize) {
        for s in from..=to {
            scaler.observe(clock.at(f64::from(s)), concurrency);
        }
    }

    #[test]
    fn without_demand_a_scale_to_zero_service_stays_at_zero() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(policy());
        assert_eq!(scaler.desired(clock.at(0.0), 0), 0);
        feed(&mut scaler, &clock, 0, 100, 0);
        assert_eq!(scaler.desired(clock.at(100.0), 0), 0);
    }

    #[test]
    fn demand_at_zero_starts_one_replica() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(policy());
        scaler.demand(clock.at(5.0));
        assert_eq!(scaler.desired(clock.at(5.0), 0), 1);
    }

    #[test]
    fn concurrency_over_the_target_scales_out_quickly() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(policy());
        feed(&mut scaler, &clock, 0, 2, 35);
        // 35 in flight / 10 per replica → 4, after three seconds, not a minute.
        assert_eq!(scaler.desired(clock.at(2.0), 1), 4);
    }

    #[test]
    fn utilisation_lowers_the_point_of_scaling_out() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(ScalePolicy {
            target_utilization: 0.5,
            ..policy()
        });
        feed(&mut scaler, &clock, 0, 2, 12);
        // 12 / (10 × 0.5) → 3.
        assert_eq!(scaler.desired(clock.at(2.0), 1), 3);
    }

    #[test]
    fn max_scale_caps_and_min_scale_floors() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(ScalePolicy {
            min_scale: 2,
            max_scale: 3,
            ..policy()
        });
        assert_eq!(scaler.desired(clock.at(0.0), 0), 2);
        feed(&mut scaler, &clock, 0, 3, 500);
        assert_eq!(scaler.desired(clock.at(3.0), 2), 3);
    }

    #[test]
    fn scaling_down_follows_the_stable_window_not_a_short_lull() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(policy());
        feed(&mut scaler, &clock, 0, 59, 40);
        assert_eq!(scaler.desired(clock.at(59.0), 4), 4);
        // Ten quiet seconds: the minute's average still wants 4 × 50/60 → ceil(3.33) = 4.
        feed(&mut scaler, &clock, 60, 69, 0);
        assert_eq!(scaler.desired(clock.at(69.0), 4), 4);
        // Load at a quarter for a whole minute: one replica is enough... once the old load
        // has left the stable window.
        feed(&mut scaler, &clock, 70, 130, 10);
        assert_eq!(scaler.desired(clock.at(130.0), 4), 1);
    }

    #[test]
    fn idle_service_goes_to_zero_only_after_the_idle_period() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(policy());
        feed(&mut scaler, &clock, 0, 9, 3);
        assert_eq!(scaler.desired(clock.at(9.0), 1), 1);
        // Demand stops at 10 s: the replica stays while the service has been idle < 30 s ...
        feed(&mut scaler, &clock, 10, 38, 0);
        assert_eq!(scaler.desired(clock.at(38.0), 1), 1);
        // ... but the stable average still holds early demand, so zero comes once both the
        // idle period has passed and the window has emptied.
        feed(&mut scaler, &clock, 39, 70, 0);
        assert_eq!(scaler.desired(clock.at(70.0), 1), 0);
    }

    #[test]
    fn min_scale_keeps_replicas_when_idle() {
        let clock = Clock::new();
        let mut scaler = Autoscaler::new(ScalePolicy {
            min_scale: 1,
            ..policy()
        });
        feed(&mut scaler, &clock, 0, 200, 0);
        assert_eq!(scaler.desired(clock.at(200.0), 1), 1);
    }

    #[test]
    fn policy_from_planned_autoscaling() {
        let planned = Autoscaling {
            min_scale: Some(1),
            max_scale: Some(20),
            target: Some(8),
            target_utilization_percentage: Some(50),
            parallelism: Some(100),
            metric: Some(ScaleMetric::Rps),
        };
        let policy = ScalePolicy::from_autoscaling(&planned, 4);
        assert_eq!(policy.min_scale, 1);
        assert_eq!(policy.max_scale, 4, "capped by the machine");
        assert_eq!(policy.target, 8);
        assert_eq!(policy.replica_concurrency, 8);
        assert!((policy.target_utilization - 0.5).abs() < f64::EPSILON);
        assert!(ScalePolicy::metric_note(&planned).unwrap().contains("rps"));

        let unbounded = Autoscaling {
            max_scale: Some(0),
            min_scale: Some(9),
            ..Autoscaling::default()
        };
        let policy = ScalePolicy::from_autoscaling(&unbounded, 3);
        assert_eq!((policy.min_scale, policy.max_scale), (3, 3));
        assert!(ScalePolicy::metric_note(&unbounded).is_none());
    }
}
