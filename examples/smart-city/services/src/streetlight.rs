//! Streetlight service: flags a lamp `defectiveLamp` when it has stayed in one power state
//! (lit or off) for 48 hours, and stores the reading with `status` and the switching times.
//!
//! `on`, `low` and `bootingUp` count as lit (`dateLastSwitchingOn`), `off` as off
//! (`dateLastSwitchingOff`). A change of state stamps the new state's switching time and sets
//! `status` back to `ok`.
//!
//! Fixed from the original: it re-stamped the switching time on every report in the same
//! state, so it measured the gap between two reports instead of the time spent in the state
//! (a lamp reporting every few minutes was never flagged); a state change did not stamp
//! anything (it relied on the event store's merge keeping old keys); `defectiveLamp` was never
//! cleared once stored; `ok` was spelled `oik`. The previous state is owned by the service
//! and updated one reading at a time per lamp.

use chrono::{DateTime, Duration, Utc};
use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler, async_trait,
    store_event,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data_object;
use crate::names::STREETLIGHT;

/// Time in one state after which the lamp is considered defective.
pub const DEFECT_AFTER_HOURS: i64 = 48;

/// The part of a streetlight's state the rule needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LampState {
    /// `on`, `off`, `low` or `bootingUp`.
    pub power_state: Option<String>,
    /// `ok` or `defectiveLamp` (or another NGSI-LD status set elsewhere).
    pub status: Option<String>,
    /// When the lamp was last switched on.
    pub date_last_switching_on: Option<DateTime<Utc>>,
    /// When the lamp was last switched off.
    pub date_last_switching_off: Option<DateTime<Utc>>,
}

fn is_lit(power_state: &str) -> Result<bool, String> {
    match power_state {
        "on" | "low" | "bootingUp" => Ok(true),
        "off" => Ok(false),
        other => Err(format!(
            "powerState {other:?}: expected on, off, low or bootingUp"
        )),
    }
}

/// The lamp's state after reporting `power_state` at `now`.
pub fn assess(
    previous: Option<LampState>,
    power_state: &str,
    now: DateTime<Utc>,
) -> Result<LampState, String> {
    let lit = is_lit(power_state)?;
    let mut state = previous.unwrap_or_default();
    let was_lit = state
        .power_state
        .as_deref()
        .map(is_lit)
        .transpose()
        .ok()
        .flatten();
    let since = if lit {
        &mut state.date_last_switching_on
    } else {
        &mut state.date_last_switching_off
    };
    if was_lit != Some(lit) || since.is_none() {
        *since = Some(now);
        state.status = Some("ok".into());
    } else if since.is_some_and(|s| now - s >= Duration::hours(DEFECT_AFTER_HOURS)) {
        state.status = Some("defectiveLamp".into());
    }
    state.power_state = Some(power_state.to_owned());
    Ok(state)
}

/// The service; it owns each lamp's state.
#[derive(Default)]
pub struct StreetlightService {
    lamps: OwnedStates<LampState>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reading {
    power_state: Option<String>,
}

#[async_trait]
impl TwinHandler for StreetlightService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(STREETLIGHT).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let reading: Reading = event.data()?;
        let invalid =
            |reason: String| HandlerError::Invalid(format!("event {}: {reason}", event.id()));
        let power_state = reading
            .power_state
            .ok_or_else(|| invalid("powerState is required".into()))?;
        let now = ctx.now();
        let state = self
            .lamps
            .update(ctx, STREETLIGHT, event.instance(), event.id(), |previous| {
                let next = assess(previous, &power_state, now).map_err(invalid)?;
                Ok((next.clone(), next))
            })
            .await?;
        let mut data = data_object(event)?;
        for (key, value) in [
            ("status", json!(state.status)),
            ("dateLastSwitchingOn", json!(state.date_last_switching_on)),
            ("dateLastSwitchingOff", json!(state.date_last_switching_off)),
        ] {
            if !value.is_null() {
                data.insert(key.into(), value);
            }
        }
        Ok(vec![store_event(
            STREETLIGHT,
            event.instance(),
            Value::Object(data),
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use std::sync::Arc;

    fn hours(h: i64) -> DateTime<Utc> {
        at(h * 60)
    }

    #[test]
    fn defective_after_48_hours_in_one_state() {
        let s = assess(None, "on", hours(0)).unwrap();
        assert_eq!(
            (s.status.as_deref(), s.date_last_switching_on),
            (Some("ok"), Some(hours(0)))
        );
        // Frequent reports in the same state do not restart the clock.
        let s = assess(Some(s), "on", hours(1)).unwrap();
        let s = assess(Some(s), "low", hours(47)).unwrap();
        assert_eq!(s.status.as_deref(), Some("ok"));
        assert_eq!(s.date_last_switching_on, Some(hours(0)));
        let s = assess(Some(s), "on", hours(48)).unwrap();
        assert_eq!(s.status.as_deref(), Some("defectiveLamp"));
        // Switching off clears the flag and stamps the switch.
        let s = assess(Some(s), "off", hours(49)).unwrap();
        assert_eq!(s.status.as_deref(), Some("ok"));
        assert_eq!(s.date_last_switching_off, Some(hours(49)));
        assert_eq!(s.date_last_switching_on, Some(hours(0)));
        assert!(
            assess(Some(s), "blinking", hours(50))
                .unwrap_err()
                .contains("blinking")
        );
    }

    #[tokio::test]
    async fn stored_state_is_the_starting_point() {
        let states = Arc::new(ktwin_sdk::MemoryStates::new());
        states.put(
            store_event(
                STREETLIGHT,
                "sl-1",
                json!({"powerState": "off", "dateLastSwitchingOff": hours(-50)}),
            )
            .unwrap(),
        );
        let ctx = context(r#"{"twinInstances":[]}"#, states, hours(0));
        let service = StreetlightService::default();
        let ev = event(
            "ktwin.real.ngsi-ld-city-streetlight",
            "sl-1",
            json!({"PowerState": "off", "msg_count": 3}),
        );
        let (ty, _, data) = summary(&service.handle(&ev, &ctx).await.unwrap()[0]);
        assert_eq!(ty, "ktwin.store.ngsi-ld-city-streetlight");
        assert_eq!(data["status"], "defectiveLamp");
        assert_eq!(data["msg_count"], 3);
        let ev = event("ktwin.real.ngsi-ld-city-streetlight", "sl-1", json!({}));
        assert!(matches!(
            service.handle(&ev, &ctx).await.unwrap_err(),
            HandlerError::Invalid(_)
        ));
    }
}
