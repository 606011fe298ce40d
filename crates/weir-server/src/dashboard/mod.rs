//! The dashboard of `weir serve`: hand-written HTML, CSS and JavaScript modules (no build step,
//! no third-party code) embedded in the binary and served at `/` and `/dashboard/*` without a
//! role (the page is public; every API call it makes carries the user's token). Also
//! `GET /v1/whoami`, which tells the page who the token is and so which buttons to show.
//!
//! For a fast page: the assets are gzip-compressed once, carry an ETag (a conditional request
//! gets 304), and the page names them under a versioned path (`/dashboard/VERSION/app.js`,
//! `VERSION` a hash of all of them) that the browser may cache for a year, so a warm load asks
//! the server only for `/` (304) and the live feed.

use crate::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// Every asset: name under `/dashboard/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/api.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/graph.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// `GET /`: the page.
pub fn index() -> MethodRouter<Arc<App>> {
    // Compress the assets while the router is built, not in the first visitor's request.
    built();
    get(|headers: HeaderMap| async move { serve("index.html", &headers, false) })
}

/// `GET /dashboard/{*path}`: the page's assets. `/dashboard/VERSION/NAME` (the URLs the page
/// uses, `VERSION` a hash of every asset) may be cached for a year: a new binary with other
/// assets has another version. `/dashboard/NAME` is revalidated every time (ETag).
pub fn assets() -> MethodRouter<Arc<App>> {
    get(|Path(path): Path<String>, headers: HeaderMap| async move {
        let built = built();
        match path.split_once('/') {
            Some((version, name)) if version == built.version => serve(name, &headers, true),
            // Another binary's version: the content may differ, so it is not cached for long.
            Some((_, name)) => serve(name, &headers, false),
            None => serve(&path, &headers, false),
        }
    })
}

/// `GET /v1/whoami`: `{name, role, auth}` of the caller's token (the identity the `authorize`
/// middleware put in the request). With `auth.enabled: false` everyone is `anonymous` with the
/// role `admin`.
pub fn whoami() -> MethodRouter<Arc<App>> {
    get(
        |State(app): State<Arc<App>>, identity: Option<axum::Extension<weir_auth::Identity>>| async move {
            match identity {
                Some(axum::Extension(who)) => axum::Json(json!({
                    "name": who.name,
                    "role": who.role.as_str(),
                    "auth": true,
                }))
                .into_response(),
                None if app.auth.is_none() => {
                    axum::Json(json!({"name": "anonymous", "role": "admin", "auth": false}))
                        .into_response()
                }
                // The middleware lets no request through here without an identity.
                None => crate::error::ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "no bearer token",
                )
                .into_response(),
            }
        },
    )
}

/// One asset as served: its bytes (the page with its asset URLs versioned), the same
/// gzip-compressed, and its entity tag.
struct Served {
    name: &'static str,
    content_type: &'static str,
    raw: Vec<u8>,
    gzip: Vec<u8>,
    etag: String,
}

/// Every asset, prepared once (compressed at the first request, about 10 ms).
struct Built {
    /// A hash of every asset's bytes, 16 hex digits: part of the asset URLs of the page.
    version: String,
    assets: Vec<Served>,
}

/// FNV-1a, 64 bits: a content hash for entity tags and the version (not a security measure).
fn fnv64(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let version = format!(
            "{:016x}",
            ASSETS.iter().fold(FNV_OFFSET, |h, (name, _, bytes)| fnv64(
                fnv64(h, name.as_bytes()),
                bytes
            ))
        );
        let assets = ASSETS
            .iter()
            .map(|&(name, content_type, bytes)| {
                let raw = if name == "index.html" {
                    String::from_utf8_lossy(bytes)
                        .replace("\"/dashboard/", &format!("\"/dashboard/{version}/"))
                        .into_bytes()
                } else {
                    bytes.to_vec()
                };
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail.
                let gzip = encoder
                    .write_all(&raw)
                    .and_then(|()| encoder.finish())
                    .unwrap_or_default();
                let etag = format!("\"{:016x}\"", fnv64(FNV_OFFSET, &raw));
                Served {
                    name,
                    content_type,
                    raw,
                    gzip,
                    etag,
                }
            })
            .collect();
        Built { version, assets }
    })
}

/// Whether `accept` (an `Accept-Encoding` value) takes gzip (`gzip;q=0` refuses it).
fn takes_gzip(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or_default();
        let refused = it.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// An asset: 304 when `If-None-Match` names its tag, else its bytes (gzip when the client
/// takes it); `immutable`: cached for a year, else revalidated every time.
fn serve(path: &str, headers: &HeaderMap, immutable: bool) -> Response {
    let Some(asset) = built().assets.iter().find(|a| a.name == path) else {
        return crate::error::ApiError::not_found(format!("no dashboard asset `{path}`"))
            .into_response();
    };
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let common = [
        (header::CACHE_CONTROL, cache),
        (header::ETAG, asset.etag.as_str()),
        (header::VARY, "accept-encoding"),
    ];
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(takes_gzip)
        && !asset.gzip.is_empty();
    if gzip {
        (
            common,
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            asset.gzip.as_slice(),
        )
            .into_response()
    } else {
        (
            common,
            [(header::CONTENT_TYPE, asset.content_type)],
            asset.raw.as_slice(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::{ASSETS, built, serve, takes_gzip};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use std::io::Read;

    async fn body(response: axum::response::Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body")
            .to_vec()
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test]
    async fn the_page_is_served_gzipped_with_an_etag_and_versioned_asset_urls() {
        let version = built().version.clone();
        let plain = serve("index.html", &HeaderMap::new(), false);
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let etag = plain.headers()[header::ETAG].clone();
        let html = String::from_utf8(body(plain).await).expect("html");
        // Every asset URL of the page carries the version (so it can be cached for long).
        assert!(
            html.contains(&format!("/dashboard/{version}/app.js")),
            "{html}"
        );
        assert!(!html.contains("\"/dashboard/app.js"), "{html}");

        let zipped = serve(
            "index.html",
            &headers(&[(header::ACCEPT_ENCODING, "gzip, deflate, br")]),
            false,
        );
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.headers()[header::VARY], "accept-encoding");
        let bytes = body(zipped).await;
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut unzipped)
            .expect("gunzip");
        assert_eq!(unzipped, html);

        // A revalidation with the tag is a 304 without a body.
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag);
        let again = serve("index.html", &conditional, false);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).await.is_empty());
        let stale = serve(
            "index.html",
            &headers(&[(header::IF_NONE_MATCH, "\"0000000000000000\"")]),
            false,
        );
        assert_eq!(stale.status(), StatusCode::OK);

        // A versioned asset is cached for a year; the app is much smaller gzipped.
        let app = serve(
            "app.js",
            &headers(&[(header::ACCEPT_ENCODING, "gzip")]),
            true,
        );
        assert_eq!(
            app.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let app_js = ASSETS.iter().find(|a| a.0 == "app.js").expect("app.js").2;
        assert!(body(app).await.len() * 2 < app_js.len());
        assert_eq!(
            serve("nope.js", &HeaderMap::new(), true).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(takes_gzip("gzip"));
        assert!(takes_gzip("deflate, GZIP;q=0.5"));
        assert!(takes_gzip("*"));
        assert!(!takes_gzip("gzip;q=0"));
        assert!(!takes_gzip("br, deflate"));
        assert!(!takes_gzip(""));
    }

    #[test]
    fn assets_are_small_and_self_contained() {
        let total: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total < 300 * 1024, "dashboard assets are {total} bytes");
        for (name, _, bytes) in ASSETS {
            // No third-party or remote code: every URL the page loads is its own (the SVG
            // namespace is a name, not something loaded).
            let text = String::from_utf8_lossy(bytes).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{name} refers to a remote URL"
            );
        }
    }
}
