//! The weather-observed twin service (see `ktwin_smart_city_services::weather`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::weather::WeatherService::default())
        .await
}
