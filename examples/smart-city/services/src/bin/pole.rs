//! The pole twin service (see `ktwin_smart_city_services::pole`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::pole::PoleService).await
}
