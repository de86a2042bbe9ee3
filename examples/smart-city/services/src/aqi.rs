//! US EPA Air Quality Index: sub-index per pollutant and its category.
//!
//! Breakpoints from the EPA "Technical Assistance Document for the Reporting of Daily Air
//! Quality" (May 2024, with the revised PM2.5 table). Concentrations are truncated to the
//! table's precision first, so every value falls inside a band; the sub-index is
//! `(I_hi − I_lo) / (C_hi − C_lo) · (C − C_lo) + I_lo`, rounded. Units: CO ppm (8 h), PM10 and
//! PM2.5 µg/m³ (24 h), SO2 ppb (1 h), O3 ppb (8 h). 8-hour ozone has no band above 200 ppb
//! (EPA switches to 1-hour values there); with one density per reading, ozone above 200 ppb is
//! mapped onto the hazardous band 201–604 ppb → 301–500.

use serde::{Deserialize, Serialize};

/// AQI categories, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AqiLevel {
    /// 0–50.
    Good,
    /// 51–100.
    Moderate,
    /// 101–150.
    UnhealthyForSensitiveGroups,
    /// 151–200.
    Unhealthy,
    /// 201–300.
    VeryUnhealthy,
    /// 301 and above.
    Hazardous,
}

impl AqiLevel {
    /// The category of an index value.
    pub fn of_index(index: u32) -> Self {
        match index {
            0..=50 => AqiLevel::Good,
            51..=100 => AqiLevel::Moderate,
            101..=150 => AqiLevel::UnhealthyForSensitiveGroups,
            151..=200 => AqiLevel::Unhealthy,
            201..=300 => AqiLevel::VeryUnhealthy,
            _ => AqiLevel::Hazardous,
        }
    }
}

/// The pollutants the air-quality service rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pollutant {
    /// Carbon monoxide, ppm.
    Co,
    /// Particulate matter < 10 µm, µg/m³.
    Pm10,
    /// Particulate matter < 2.5 µm, µg/m³.
    Pm25,
    /// Sulphur dioxide, ppb.
    So2,
    /// Ozone, ppb.
    O3,
}

/// `(C_lo, C_hi, I_lo, I_hi)`.
type Band = (f64, f64, u32, u32);

impl Pollutant {
    /// Every rated pollutant, in the order of the original service.
    pub const ALL: [Pollutant; 5] = [
        Pollutant::Co,
        Pollutant::Pm10,
        Pollutant::Pm25,
        Pollutant::So2,
        Pollutant::O3,
    ];

    fn bands(self) -> &'static [Band] {
        match self {
            Pollutant::Co => &[
                (0.0, 4.4, 0, 50),
                (4.5, 9.4, 51, 100),
                (9.5, 12.4, 101, 150),
                (12.5, 15.4, 151, 200),
                (15.5, 30.4, 201, 300),
                (30.5, 50.4, 301, 500),
            ],
            Pollutant::Pm10 => &[
                (0.0, 54.0, 0, 50),
                (55.0, 154.0, 51, 100),
                (155.0, 254.0, 101, 150),
                (255.0, 354.0, 151, 200),
                (355.0, 424.0, 201, 300),
                (425.0, 604.0, 301, 500),
            ],
            Pollutant::Pm25 => &[
                (0.0, 9.0, 0, 50),
                (9.1, 35.4, 51, 100),
                (35.5, 55.4, 101, 150),
                (55.5, 125.4, 151, 200),
                (125.5, 225.4, 201, 300),
                (225.5, 325.4, 301, 500),
            ],
            Pollutant::So2 => &[
                (0.0, 35.0, 0, 50),
                (36.0, 75.0, 51, 100),
                (76.0, 185.0, 101, 150),
                (186.0, 304.0, 151, 200),
                (305.0, 604.0, 201, 300),
                (605.0, 1004.0, 301, 500),
            ],
            Pollutant::O3 => &[
                (0.0, 54.0, 0, 50),
                (55.0, 70.0, 51, 100),
                (71.0, 85.0, 101, 150),
                (86.0, 105.0, 151, 200),
                (106.0, 200.0, 201, 300),
                (201.0, 604.0, 301, 500),
            ],
        }
    }

    /// Decimal places the EPA table uses for this pollutant.
    fn decimals(self) -> i32 {
        match self {
            Pollutant::Co | Pollutant::Pm25 => 1,
            Pollutant::Pm10 | Pollutant::So2 | Pollutant::O3 => 0,
        }
    }

    /// The prefix of this pollutant's output field (`<prefix>AqiLevel`).
    pub fn field_prefix(self) -> &'static str {
        match self {
            Pollutant::Co => "CO",
            Pollutant::Pm10 => "PM10",
            Pollutant::Pm25 => "PM25",
            Pollutant::So2 => "SO2",
            Pollutant::O3 => "O3",
        }
    }

    /// The sub-index of `concentration`; `None` for negative or non-finite values. Values
    /// above the table are 500 (the top of the scale).
    pub fn index(self, concentration: f64) -> Option<u32> {
        if !concentration.is_finite() || concentration < 0.0 {
            return None;
        }
        let scale = 10f64.powi(self.decimals());
        // The epsilon keeps values like 9.1 (9.0999… in binary) from truncating to 9.0.
        let c = (concentration * scale + 1e-9).floor() / scale;
        let bands = self.bands();
        let &(c_lo, c_hi, i_lo, i_hi) = bands
            .iter()
            .find(|&&(_, c_hi, _, _)| c <= c_hi)
            .unwrap_or(&bands[bands.len() - 1]);
        let c = c.min(c_hi);
        let index = f64::from(i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + f64::from(i_lo);
        // Truncation put c inside [c_lo, c_hi], so the result is within [i_lo, i_hi].
        Some(index.round() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_sub_indices() {
        // (pollutant, concentration, expected index), computed by hand with the formula.
        let cases = [
            (Pollutant::Pm25, 35.5, 101),  // lower edge of USG
            (Pollutant::Pm25, 35.4, 100),  // upper edge of MODERATE
            (Pollutant::Pm25, 12.0, 56),   // 49/26.3·2.9 + 51 = 56.4 (GOOD in the pre-2024 table)
            (Pollutant::Pm25, 8.0, 44),    // 50/9·8 = 44.4
            (Pollutant::Pm25, 9.05, 50),   // truncated to 9.0
            (Pollutant::Pm25, 9.1, 51),    // not truncated to 9.0
            (Pollutant::Co, 8.0, 86),      // 49/4.9·3.5 + 51 = 86
            (Pollutant::Co, 40.0, 396),    // 199/19.9·9.5 + 301 = 396
            (Pollutant::Pm10, 80.0, 63),   // 49/99·25 + 51 = 63.4
            (Pollutant::O3, 8.0, 7),       // 50/54·8 = 7.4
            (Pollutant::O3, 60.0, 67),     // 49/15·5 + 51 = 67.3
            (Pollutant::So2, 8.0, 11),     // 50/35·8 = 11.4
            (Pollutant::So2, 500.0, 266),  // 99/299·195 + 201 = 265.6 (the original returned "")
            (Pollutant::So2, 5000.0, 500), // above the table
        ];
        for (pollutant, c, expected) in cases {
            assert_eq!(pollutant.index(c), Some(expected), "{pollutant:?} {c}");
        }
        assert_eq!(Pollutant::Co.index(-1.0), None);
        assert_eq!(Pollutant::Co.index(f64::NAN), None);
    }

    #[test]
    fn categories() {
        assert_eq!(AqiLevel::of_index(0), AqiLevel::Good);
        assert_eq!(AqiLevel::of_index(50), AqiLevel::Good);
        assert_eq!(AqiLevel::of_index(51), AqiLevel::Moderate);
        assert_eq!(
            AqiLevel::of_index(150),
            AqiLevel::UnhealthyForSensitiveGroups
        );
        assert_eq!(AqiLevel::of_index(200), AqiLevel::Unhealthy);
        assert_eq!(AqiLevel::of_index(300), AqiLevel::VeryUnhealthy);
        assert_eq!(AqiLevel::of_index(301), AqiLevel::Hazardous);
        assert!(AqiLevel::Hazardous > AqiLevel::Moderate);
        assert_eq!(
            serde_json::to_string(&AqiLevel::UnhealthyForSensitiveGroups).unwrap(),
            "\"UNHEALTHY_FOR_SENSITIVE_GROUPS\""
        );
    }
}
