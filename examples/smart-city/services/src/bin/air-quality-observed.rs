//! The air-quality-observed twin service (see `ktwin_smart_city_services::air_quality`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::air_quality::AirQualityService).await
}
