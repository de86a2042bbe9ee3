//! The dashboard's routes serve exactly the committed build: every file of `assets/`, the
//! files the page refers to, with caching that lets a new build through at once.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn files_on_disk(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_on_disk(&path, out);
        } else {
            let relative = path.strip_prefix(assets_dir()).unwrap();
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

async fn get(uri: &str, etag: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(uri);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    ktwin_dashboard::router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(response: axum::response::Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

#[tokio::test]
async fn every_built_file_is_embedded_and_served_as_committed() {
    let mut disk = Vec::new();
    files_on_disk(&assets_dir(), &mut disk);
    disk.sort();
    let mut embedded: Vec<String> = ktwin_dashboard::asset_paths().collect();
    embedded.sort();
    assert_eq!(
        embedded, disk,
        "the binary must embed exactly the built files"
    );
    for path in disk {
        let uri = if path == ktwin_dashboard::INDEX {
            "/".to_owned()
        } else {
            format!("/{path}")
        };
        let response = get(&uri, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            body(response).await,
            std::fs::read(assets_dir().join(&path)).unwrap(),
            "{uri} differs from assets/{path}"
        );
    }
}

#[tokio::test]
async fn the_page_refers_only_to_served_files_with_their_types() {
    let page = String::from_utf8(body(get("/", None).await).await).unwrap();
    let referenced: Vec<&str> = page
        .split('"')
        .filter(|part| part.starts_with("./assets/"))
        .collect();
    assert!(referenced.iter().any(|p| p.ends_with(".js")), "{page}");
    assert!(referenced.iter().any(|p| p.ends_with(".css")), "{page}");
    for path in referenced {
        let response = get(path.trim_start_matches('.'), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        let expected = if path.ends_with(".js") {
            "javascript"
        } else {
            "text/css"
        };
        assert!(content_type.contains(expected), "{path}: {content_type}");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }
}

#[tokio::test]
async fn the_page_is_revalidated_and_protected() {
    let response = get("/", None).await;
    let headers = response.headers().clone();
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let etag = headers[header::ETAG].to_str().unwrap();
    let again = get("/", Some(etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body(again).await.is_empty());
    let other = get("/", Some("\"something-else\"")).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_files_are_404_and_api_paths_are_left_alone() {
    let response = get("/assets/nope.js", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8(body(response).await)
            .unwrap()
            .contains("nope.js")
    );
    assert_eq!(
        get("/api/v1/twin-graph", None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/assets/../Cargo.toml", None).await.status(),
        StatusCode::NOT_FOUND
    );
}
