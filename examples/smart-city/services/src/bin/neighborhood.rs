//! The neighborhood twin service (see `ktwin_smart_city_services::neighborhood`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(
        ktwin_smart_city_services::neighborhood::NeighborhoodService::default(),
    )
    .await
}
