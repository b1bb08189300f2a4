//! The browser console on its own port: the Leptos app's files (`ui/dist`, embedded at build time with
//! rust-embed) at `/`, and the service API beside them on the same origin (so the page needs no CORS and
//! signs in with `POST /console/login`). The device API and MQTT over WebSockets are not served here.
//!
//! `index.html` is never cached (it names the current build's hashed files); the hashed files are cached
//! for a year. Every answer carries a Content-Security-Policy that allows only this origin, plus the
//! inline start-up script Trunk writes, by its SHA-256.

use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};

use super::HttpResponse;

#[derive(rust_embed::RustEmbed)]
#[folder = "../../ui/dist"]
#[allow_missing = true]
struct Assets;

/// Shown when the binary was built before `make ui` produced `ui/dist`.
const NOT_BUILT: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DPS Console</title></head>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>DPS Console</h1>\
<p>This <code>dps</code> binary was built without the console's files. Build them and the binary again:</p>\
<pre>make ui &amp;&amp; cargo build -p dps-cli</pre><p>(<code>make run</code> does both.) The service API on this port works \
as usual.</p></body></html>";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `'sha256-…'` of every inline `<script>` in `html`.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body_start = open_end + 1;
        let Some(close) = after[body_start..].find("</script>") else { break };
        let body = &after[body_start..body_start + close];
        if !tag.contains(" src=") && !body.trim().is_empty() {
            let digest = Sha256::digest(body.as_bytes());
            out.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        }
        rest = &after[body_start + close..];
    }
    out
}

fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let index = Assets::get("index.html").map(|f| String::from_utf8_lossy(&f.data).into_owned()).unwrap_or_default();
        let scripts = inline_script_hashes(&index).join(" ");
        format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' {scripts}; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
    })
}

fn with_headers(mut r: HttpResponse, content_type: &'static str, cache: &'static str) -> HttpResponse {
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(csp()) {
        h.insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// The console's file for a GET of `path`, if `path` names one (`/` is `index.html`). Anything else is the
/// service API's to answer.
pub fn asset(method: &Method, path: &str) -> Option<HttpResponse> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    let body = |b: Bytes| if method == Method::HEAD { Full::new(Bytes::new()).boxed() } else { Full::new(b).boxed() };
    match Assets::get(name) {
        Some(file) => {
            let cache = if name == "index.html" { "no-cache" } else { "public, max-age=31536000, immutable" };
            let data = Bytes::from(file.data.into_owned());
            Some(with_headers(Response::new(body(data)), content_type(name), cache))
        }
        None if name == "index.html" => {
            let mut r = with_headers(Response::new(body(Bytes::from_static(NOT_BUILT.as_bytes()))), "text/html; charset=utf-8", "no-cache");
            *r.status_mut() = StatusCode::OK;
            Some(r)
        }
        None => None,
    }
}

/// Whether the console's files were embedded (false: the binary was built before `make ui`).
pub fn built() -> bool {
    Assets::get("index.html").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_are_not() {
        let html = "<html><script type=\"module\">import init from '/a.js';init();</script><script src=\"/b.js\"></script></html>";
        let hashes = inline_script_hashes(html);
        assert_eq!(hashes.len(), 1);
        let want = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"import init from '/a.js';init();"));
        assert_eq!(hashes[0], format!("'sha256-{want}'"));
    }

    #[test]
    fn the_root_is_always_answered_and_unknown_files_fall_through_to_the_api() {
        let root = asset(&Method::GET, "/").map(|r| (r.status(), r.headers().get("content-type").cloned()));
        assert_eq!(root, Some((StatusCode::OK, Some(HeaderValue::from_static("text/html; charset=utf-8")))));
        assert!(asset(&Method::GET, "/enrollments/dev-1").is_none());
        assert!(asset(&Method::POST, "/").is_none());
    }
}
