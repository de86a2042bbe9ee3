//! Pole service: relays the AQI level a pole receives (`updateairqualityindex`) to the pole's
//! neighborhood (`refNeighborhood`).
//!
//! Fixed from the original: the payload is validated (a command without a known `aqiLevel` is
//! rejected with 400 here instead of travelling on and being dropped by the neighborhood); a
//! graph that lacks the pole or its neighborhood is a 400 naming them, not a nil-dereference
//! panic; the graph is refreshed instead of cached for the process lifetime (SDK).

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait};
use serde::{Deserialize, Serialize};

use crate::aqi::AqiLevel;
use crate::names::{CMD_UPDATE_AQI, POLE, REL_NEIGHBORHOOD};

/// Payload of `updateairqualityindex`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAirQualityIndex {
    /// The level to record.
    pub aqi_level: AqiLevel,
}

/// The service.
#[derive(Debug, Default)]
pub struct PoleService;

#[async_trait]
impl TwinHandler for PoleService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::command(POLE, CMD_UPDATE_AQI).expect("valid names")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let command: UpdateAirQualityIndex = event.data()?;
        Ok(vec![
            ctx.command_to_related(
                POLE,
                event.instance(),
                REL_NEIGHBORHOOD,
                CMD_UPDATE_AQI,
                command,
            )
            .await?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use serde_json::json;
    use std::sync::Arc;

    const GRAPH: &str = r#"{"twinInstances":[{"name":"city-pole-nb001-p00007","interface":"city-pole",
        "relationships":[{"name":"refNeighborhood","interface":"s4city-city-neighborhood",
                          "instance":"s4city-city-neighborhood-nb001"}]}]}"#;

    #[tokio::test]
    async fn relays_to_the_neighborhood() {
        let ctx = context(GRAPH, Arc::new(ktwin_sdk::MemoryStates::new()), at(0));
        let ev = event(
            "ktwin.command.city-pole.updateairqualityindex",
            "city-pole-nb001-p00007",
            json!({"AQILevel": "UNHEALTHY"}),
        );
        let out: Vec<_> = PoleService
            .handle(&ev, &ctx)
            .await
            .unwrap()
            .iter()
            .map(summary)
            .collect();
        assert_eq!(
            out,
            vec![(
                "ktwin.command.s4city-city-neighborhood.updateairqualityindex".to_owned(),
                "s4city-city-neighborhood-nb001".to_owned(),
                json!({"aqiLevel": "UNHEALTHY"})
            )]
        );
    }

    #[tokio::test]
    async fn rejects_commands_without_a_level() {
        let ctx = context(GRAPH, Arc::new(ktwin_sdk::MemoryStates::new()), at(0));
        for data in [json!({}), json!({"aqiLevel": "PRETTY_BAD"})] {
            let ev = event(
                "ktwin.command.city-pole.updateairqualityindex",
                "city-pole-nb001-p00007",
                data,
            );
            let err = PoleService.handle(&ev, &ctx).await.unwrap_err();
            assert!(matches!(err, HandlerError::Invalid(_)), "{err}");
        }
    }
}
