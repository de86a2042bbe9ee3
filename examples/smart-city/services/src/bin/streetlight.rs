//! The streetlight twin service (see `ktwin_smart_city_services::streetlight`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(
        ktwin_smart_city_services::streetlight::StreetlightService::default(),
    )
    .await
}
