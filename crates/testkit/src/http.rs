//! HTTP servers for tests.

/// Serves `app` on a free loopback port in a background task and returns its base URL
/// (`http://127.0.0.1:PORT`, without a trailing slash).
///
/// # Panics
/// When no loopback port can be bound: the test machine is broken.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("test HTTP server") });
    format!("http://{address}")
}
