//! The EV charging station twin service (see `ktwin_smart_city_services::ev_charging`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(
        ktwin_smart_city_services::ev_charging::EvChargingService::default(),
    )
    .await
}
