//! The device twin service (see `ktwin_smart_city_services::device`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::device::DeviceService).await
}
