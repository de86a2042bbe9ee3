//! Neighborhood service: keeps the worst AQI level its poles reported during the last hour
//! (`updateairqualityindex`) and stores it.
//!
//! Fixed from the original: the one-hour window never reset (`dateObserved` was set once, so
//! after an hour every command overwrote the level and "worst" degraded to "last"); here the
//! state records when each level was last reported and the level is the most severe one seen
//! within the hour, exactly. The read-modify-write through the event store lost updates when
//! commands raced or the previous write was still queued; the state is now owned by the
//! service ([`OwnedStates`]) and updated one command at a time per neighborhood.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler, async_trait,
    store_event,
};
use serde::{Deserialize, Serialize};

use crate::aqi::AqiLevel;
use crate::names::{CMD_UPDATE_AQI, NEIGHBORHOOD};
use crate::pole::UpdateAirQualityIndex;

/// How far back the worst level is taken.
pub const WINDOW_MINUTES: i64 = 60;

/// The stored state of a neighborhood.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NeighborhoodState {
    /// The worst level reported within the last hour.
    pub aqi_level: Option<AqiLevel>,
    /// When that level was last reported.
    pub date_observed: Option<DateTime<Utc>>,
    /// When the state was last updated.
    pub date_modified: Option<DateTime<Utc>>,
    /// When each level was last reported (older entries are ignored, not deleted: the event
    /// store's merge keeps keys anyway).
    #[serde(default)]
    pub aqi_level_last_seen: BTreeMap<AqiLevel, DateTime<Utc>>,
}

/// The state after `level` is reported at `now`.
pub fn record(
    previous: Option<NeighborhoodState>,
    level: AqiLevel,
    now: DateTime<Utc>,
) -> NeighborhoodState {
    let mut last_seen = previous.map(|s| s.aqi_level_last_seen).unwrap_or_default();
    last_seen.insert(level, now);
    let horizon = now - Duration::minutes(WINDOW_MINUTES);
    let (worst, observed) = last_seen
        .iter()
        .filter(|&(_, &seen)| seen > horizon)
        .max_by_key(|&(level, _)| *level)
        .map(|(level, seen)| (*level, *seen))
        .unwrap_or((level, now));
    NeighborhoodState {
        aqi_level: Some(worst),
        date_observed: Some(observed),
        date_modified: Some(now),
        aqi_level_last_seen: last_seen,
    }
}

/// The service; it owns the state of its neighborhoods.
#[derive(Default)]
pub struct NeighborhoodService {
    states: OwnedStates<NeighborhoodState>,
}

#[async_trait]
impl TwinHandler for NeighborhoodService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::command(NEIGHBORHOOD, CMD_UPDATE_AQI).expect("valid names")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let command: UpdateAirQualityIndex = event.data()?;
        let now = ctx.now();
        let state = self
            .states
            .update(
                ctx,
                NEIGHBORHOOD,
                event.instance(),
                event.id(),
                |previous| {
                    let next = record(previous, command.aqi_level, now);
                    Ok((next.clone(), next))
                },
            )
            .await?;
        Ok(vec![store_event(NEIGHBORHOOD, event.instance(), state)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn worst_level_of_the_last_hour() {
        use AqiLevel::*;
        let steps = [
            (0, Moderate, Moderate),
            (10, Good, Moderate), // MODERATE seen 10 min ago
            (50, UnhealthyForSensitiveGroups, UnhealthyForSensitiveGroups),
            (65, Good, UnhealthyForSensitiveGroups), // MODERATE (65 min ago) expired, USG 15 min ago
            (115, Good, Good),                       // USG 65 min ago expired
        ];
        let mut state = None;
        for (minute, reported, expected) in steps {
            let next = record(state, reported, at(minute));
            assert_eq!(next.aqi_level, Some(expected), "minute {minute}");
            state = Some(next);
        }
        assert_eq!(state.unwrap().date_observed, Some(at(115)));
    }

    #[tokio::test]
    async fn starts_from_the_stored_state_and_stores_the_new_one() {
        let states = Arc::new(ktwin_sdk::MemoryStates::new());
        states.put(
            store_event(
                NEIGHBORHOOD,
                "s4city-city-neighborhood-nb001",
                json!({"aqiLevel": "UNHEALTHY", "aqiLevelLastSeen": {"UNHEALTHY": at(-30)}}),
            )
            .unwrap(),
        );
        let service = NeighborhoodService::default();
        let ctx = context(r#"{"twinInstances":[]}"#, states, at(0));
        let ev = event(
            "ktwin.command.s4city-city-neighborhood.updateairqualityindex",
            "s4city-city-neighborhood-nb001",
            json!({"aqiLevel": "MODERATE"}),
        );
        let out: Vec<_> = service
            .handle(&ev, &ctx)
            .await
            .unwrap()
            .iter()
            .map(summary)
            .collect();
        assert_eq!(out[0].0, "ktwin.store.s4city-city-neighborhood");
        assert_eq!(out[0].1, "s4city-city-neighborhood-nb001");
        assert_eq!(out[0].2["aqiLevel"], "UNHEALTHY");
        assert_eq!(out[0].2["dateObserved"], json!(at(-30)));
        assert_eq!(out[0].2["aqiLevelLastSeen"]["MODERATE"], json!(at(0)));
    }
}
