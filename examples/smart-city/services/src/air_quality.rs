//! Air-quality-observed service: rates each pollutant on the US EPA AQI, stores the enriched
//! observation and sends the overall level to the observation's pole
//! (`updateairqualityindex`).
//!
//! Fixed from the original: the sub-index used the index bound as the concentration bound
//! (`C_hi` taken from `I_hi`), so high concentrations got a negative slope and an empty level
//! (SO2 = 500 ppb was ""); the hazardous bands had swapped bounds; PM2.5 used the pre-2024
//! table. The overall level is the **most severe** one (the original took the first non-GOOD
//! in CO, PM10, PM2.5, SO2, O3 order), and no command with an empty payload is sent when no
//! pollutant was measured. A missing pole relationship is a 400, not a panic.

use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{
    EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait, store_event,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aqi::{AqiLevel, Pollutant};
use crate::data_object;
use crate::names::{AIR_QUALITY, CMD_UPDATE_AQI, REL_POLE};

/// The densities the service rates (µg/m³, ppm or ppb per [`crate::aqi`]).
#[derive(Debug, Default, Deserialize)]
pub struct Densities {
    /// Carbon monoxide.
    #[serde(rename = "CODensity")]
    pub co: Option<f64>,
    /// PM10.
    #[serde(rename = "PM10Density")]
    pub pm10: Option<f64>,
    /// PM2.5.
    #[serde(rename = "PM25Density")]
    pub pm25: Option<f64>,
    /// Sulphur dioxide.
    #[serde(rename = "SO2Density")]
    pub so2: Option<f64>,
    /// Ozone.
    #[serde(rename = "O3Density")]
    pub o3: Option<f64>,
}

impl Densities {
    fn of(&self, pollutant: Pollutant) -> Option<f64> {
        match pollutant {
            Pollutant::Co => self.co,
            Pollutant::Pm10 => self.pm10,
            Pollutant::Pm25 => self.pm25,
            Pollutant::So2 => self.so2,
            Pollutant::O3 => self.o3,
        }
    }
}

/// The rating of one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Sub-index and level of each measured pollutant.
    pub pollutants: Vec<(Pollutant, u32, AqiLevel)>,
    /// The highest sub-index and its level; `None` when nothing was measured.
    pub overall: Option<(u32, AqiLevel)>,
}

/// Rates every measured pollutant; the overall AQI is the highest sub-index (EPA).
pub fn assess(densities: &Densities) -> Assessment {
    let pollutants: Vec<_> = Pollutant::ALL
        .into_iter()
        .filter_map(|p| {
            let index = p.index(densities.of(p)?)?;
            Some((p, index, AqiLevel::of_index(index)))
        })
        .collect();
    let overall = pollutants
        .iter()
        .map(|&(_, index, level)| (index, level))
        .max_by_key(|&(index, _)| index);
    Assessment {
        pollutants,
        overall,
    }
}

/// The service.
#[derive(Debug, Default)]
pub struct AirQualityService;

#[async_trait]
impl TwinHandler for AirQualityService {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(AIR_QUALITY).expect("valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let assessment = assess(&event.data()?);
        let mut data = data_object(event)?;
        for (pollutant, _, level) in &assessment.pollutants {
            data.insert(
                format!("{}AqiLevel", pollutant.field_prefix()),
                json!(level),
            );
        }
        let Some((index, level)) = assessment.overall else {
            return Ok(vec![store_event(
                AIR_QUALITY,
                event.instance(),
                Value::Object(data),
            )?]);
        };
        data.insert("airQualityIndex".into(), json!(index));
        data.insert("aqiLevel".into(), json!(level));
        let command = ctx
            .command_to_related(
                AIR_QUALITY,
                event.instance(),
                REL_POLE,
                CMD_UPDATE_AQI,
                json!({"aqiLevel": level}),
            )
            .await?;
        Ok(vec![
            store_event(AIR_QUALITY, event.instance(), Value::Object(data))?,
            command,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, context, event, summary};
    use std::sync::Arc;

    const GRAPH: &str = r#"{"twinInstances":[{"name":"ngsi-ld-city-airqualityobserved-nb001-p00007",
        "interface":"ngsi-ld-city-airqualityobserved",
        "relationships":[{"name":"citypole","interface":"city-pole","instance":"city-pole-nb001-p00007"}]}]}"#;

    #[test]
    fn overall_level_is_the_most_severe() {
        // CO 8 ppm → 86 MODERATE, PM2.5 35.5 → 101 USG, O3 8 ppb → 7 GOOD.
        let a = assess(&Densities {
            co: Some(8.0),
            pm25: Some(35.5),
            o3: Some(8.0),
            ..Default::default()
        });
        assert_eq!(
            a.pollutants,
            vec![
                (Pollutant::Co, 86, AqiLevel::Moderate),
                (Pollutant::Pm25, 101, AqiLevel::UnhealthyForSensitiveGroups),
                (Pollutant::O3, 7, AqiLevel::Good),
            ]
        );
        assert_eq!(
            a.overall,
            Some((101, AqiLevel::UnhealthyForSensitiveGroups))
        );
        assert_eq!(assess(&Densities::default()).overall, None);
    }

    #[tokio::test]
    async fn simulator_reading_is_stored_enriched_and_sent_to_the_pole() {
        // The paper's device sends every density as 8: CO 86, PM10 7, PM2.5 44, SO2 11, O3 7.
        let reading = json!({"CODensity": 8, "PM10Density": 8, "PM25Density": 8, "SO2Density": 8,
            "O3Density": 8, "WindSpeed": 8, "reliability": 8});
        let ev = event(
            "ktwin.real.ngsi-ld-city-airqualityobserved",
            "ngsi-ld-city-airqualityobserved-nb001-p00007",
            reading,
        );
        let ctx = context(GRAPH, Arc::new(ktwin_sdk::MemoryStates::new()), at(0));
        let out: Vec<_> = AirQualityService
            .handle(&ev, &ctx)
            .await
            .unwrap()
            .iter()
            .map(summary)
            .collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "ktwin.store.ngsi-ld-city-airqualityobserved");
        assert_eq!(out[0].2["COAqiLevel"], "MODERATE");
        assert_eq!(out[0].2["PM25AqiLevel"], "GOOD");
        assert_eq!(out[0].2["airQualityIndex"], 86);
        assert_eq!(out[0].2["aqiLevel"], "MODERATE");
        assert_eq!(
            out[0].2["WindSpeed"], 8,
            "fields the service does not rate are kept"
        );
        assert_eq!(
            out[1],
            (
                "ktwin.command.city-pole.updateairqualityindex".to_owned(),
                "city-pole-nb001-p00007".to_owned(),
                json!({"aqiLevel": "MODERATE"})
            )
        );
    }

    #[tokio::test]
    async fn nothing_measured_means_store_only_and_missing_pole_is_invalid() {
        let ctx = context(GRAPH, Arc::new(ktwin_sdk::MemoryStates::new()), at(0));
        let ev = event(
            "ktwin.real.ngsi-ld-city-airqualityobserved",
            "ngsi-ld-city-airqualityobserved-nb001-p00007",
            json!({"temperature": 20}),
        );
        let out = AirQualityService.handle(&ev, &ctx).await.unwrap();
        assert_eq!(out.len(), 1);
        let ev = event(
            "ktwin.real.ngsi-ld-city-airqualityobserved",
            "unknown-aq",
            json!({"CODensity": 1}),
        );
        let err = AirQualityService.handle(&ev, &ctx).await.unwrap_err();
        assert!(matches!(err, HandlerError::Invalid(_)), "{err}");
    }
}
