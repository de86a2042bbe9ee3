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

/// Every item of a paged listing of the platform's HTTP API (`url` with its query, e.g.
/// `…/api/v1/twin-events?limit=1000`), following `x-next-cursor` to the last page.
///
/// # Panics
/// When a page is not answered 200 with a JSON array of `T`.
pub async fn all_pages<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Vec<T> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_url = match &cursor {
            Some(cursor) => format!("{url}&cursor={cursor}"),
            None => url.to_owned(),
        };
        let response = client.get(&page_url).send().await.expect("the API answers");
        assert_eq!(response.status(), 200, "{page_url}");
        cursor = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().expect("an ASCII cursor").to_owned());
        items.extend(response.json::<Vec<T>>().await.expect("a JSON page"));
        if cursor.is_none() {
            return items;
        }
    }
}
