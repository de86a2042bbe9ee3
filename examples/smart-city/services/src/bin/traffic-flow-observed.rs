//! The traffic-flow-observed twin service (see `ktwin_smart_city_services::flow`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_smart_city_services::run(ktwin_smart_city_services::flow::FlowService::traffic()).await
}
