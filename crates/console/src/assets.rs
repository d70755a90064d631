//! The console's files, embedded at build time from `assets/` and served by the gateway.
//!
//! Every file but the page shell lives under `/ui/static/<version>/…`, where the version is a
//! digest of all the files: those responses are cached for a year (`immutable`), and a new
//! build changes the path. The shell (`index.html`, served for every console URL so that each
//! page and each log record has its own address) is revalidated on every load (`no-cache` with
//! a strong `ETag`). Text files are gzip-compressed once, on first use, and sent compressed to
//! clients that accept it. Every response carries [`CONTENT_SECURITY_POLICY`] and the other
//! headers of [`secure_headers`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Files;

/// The console's Content-Security-Policy: scripts, styles, images and fetches from the
/// gateway itself only — no inline script or style, no plugins, no framing, forms post only
/// to the gateway.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The path prefix of the versioned files.
pub const STATIC_PREFIX: &str = "/ui/static/";

/// One file ready to serve.
#[derive(Debug)]
pub struct Asset {
    body: Vec<u8>,
    gzip: Option<Vec<u8>>,
    etag: HeaderValue,
    content_type: &'static str,
}

struct Bundle {
    version: String,
    files: HashMap<String, Asset>,
    index: Asset,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(build);

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("image/svg")
}

fn asset(name: &str, body: Vec<u8>) -> Asset {
    let content_type = content_type(name);
    let gzip = (compressible(content_type) && body.len() > 512)
        .then(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&body).ok()?;
            enc.finish().ok()
        })
        .flatten()
        .filter(|z| z.len() < body.len());
    let digest = Sha256::digest(&body);
    let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    Asset {
        body,
        gzip,
        etag,
        content_type,
    }
}

fn build() -> Bundle {
    let mut names: Vec<String> = Files::iter().map(|n| n.into_owned()).collect();
    names.sort();
    let mut whole = Sha256::new();
    let mut raw = Vec::with_capacity(names.len());
    for name in names {
        let Some(file) = Files::get(&name) else {
            continue;
        };
        whole.update(name.as_bytes());
        whole.update([0]);
        whole.update(&file.data);
        raw.push((name, file.data.into_owned()));
    }
    let version = hex::encode(&whole.finalize()[..8]);
    let prefix = format!("{STATIC_PREFIX}{version}");
    let mut index = Vec::new();
    let mut files = HashMap::with_capacity(raw.len());
    for (name, body) in raw {
        if name == "index.html" {
            index = String::from_utf8_lossy(&body)
                .replace("{{static}}", &prefix)
                .into_bytes();
        } else {
            let a = asset(&name, body);
            files.insert(name, a);
        }
    }
    Bundle {
        version,
        files,
        index: asset("index.html", index),
    }
}

/// The digest of the whole set of files, which names the versioned path.
pub fn version() -> &'static str {
    &BUNDLE.version
}

/// The page shell, served for every console page's URL.
pub fn index() -> &'static Asset {
    &BUNDLE.index
}

/// The file at `path` below `/ui/static/`: `<version>/<name>`. A file of another version (a
/// page loaded before an upgrade) is served from this one, but not cached for long.
pub fn find(path: &str) -> Option<(&'static Asset, bool)> {
    let (version, name) = path.split_once('/')?;
    let file = BUNDLE.files.get(name)?;
    Some((file, version == BUNDLE.version))
}

/// The headers every console response carries: the Content-Security-Policy, no MIME sniffing,
/// no framing, no referrer, and an opener policy that isolates the console's window.
pub fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// How long a response may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// A versioned file: a year, never revalidated.
    Immutable,
    /// Revalidated on every use (the shell, a file of another version).
    Revalidate,
}

/// The response that serves `asset` to a request with headers `request`: 304 when its
/// `If-None-Match` names the file's `ETag`, gzip when accepted.
pub fn respond(asset: &Asset, request: &HeaderMap, caching: Caching) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    let headers = response.headers_mut();
    secure_headers(headers);
    headers.insert(ETAG, asset.etag.clone());
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(match caching {
            Caching::Immutable => "public, max-age=31536000, immutable",
            Caching::Revalidate => "no-cache",
        }),
    );
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    let not_modified = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/").as_bytes() == asset.etag.as_bytes()
        });
    if not_modified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    let gzip_ok = request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        });
    let body = match (&asset.gzip, gzip_ok) {
        (Some(z), true) => {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            z.clone()
        }
        _ => asset.body.clone(),
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = body;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_points_at_this_builds_versioned_files() {
        let index = String::from_utf8(index().body.clone()).unwrap();
        assert!(!index.contains("{{static}}"));
        assert!(index.contains(&format!("/ui/static/{}/app.js", version())));
        let (file, current) = find(&format!("{}/app.js", version())).unwrap();
        assert!(current);
        assert_eq!(file.content_type, "text/javascript; charset=utf-8");
        let (_, current) = find("0000/app.js").unwrap();
        assert!(!current);
        assert!(find(&format!("{}/nope.js", version())).is_none());
        assert!(find(&format!("{}/../Cargo.toml", version())).is_none());
    }

    #[test]
    fn files_are_compressed_and_revalidated_by_etag() {
        let (file, _) = find(&format!("{}/app.css", version())).unwrap();
        let mut req = HeaderMap::new();
        req.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        let r = respond(file, &req, Caching::Immutable);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
        assert!(
            r.headers()[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        req.insert(IF_NONE_MATCH, r.headers()[ETAG].clone());
        let r = respond(file, &req, Caching::Immutable);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.body().is_empty());
        let plain = respond(file, &HeaderMap::new(), Caching::Revalidate);
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(plain.body(), &file.body);
    }
}
