//! The parking-spot twin service (see `ktwin_smart_city_services::parking`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(
        ktwin_smart_city_services::parking::ParkingSpotService::default(),
    )
    .await
}
