//! The off-street parking twin service (see `ktwin_smart_city_services::parking`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::parking::ParkingService::off_street())
        .await
}
