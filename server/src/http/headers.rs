//! Security headers on every response: what a browser may load and run for Kenning's pages, and
//! that no other site may frame them, sniff their types or learn their URLs from a link. And how
//! long a browser may keep the bundle's files.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Scripts, styles, images and connections from Kenning itself only. The hydration bootstrap is
/// an inline script and components set inline styles, so those stay allowed; WebAssembly needs
/// `wasm-unsafe-eval`. Nothing may frame the pages (clickjacking), plugins are off, and forms
/// and `<base>` cannot point elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// The middleware: sets each header the handler did not set itself.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let caching = bundle_caching(req.uri().path());
    let mut response = next.run(req).await;
    if let Some(policy) = caching.filter(|_| response.status().is_success()) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    let headers = response.headers_mut();
    let defaults: [(HeaderName, &'static str); 5] = [
        (CONTENT_SECURITY_POLICY, CSP),
        (X_FRAME_OPTIONS, "DENY"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// How long a browser may keep a file of the bundle. A name carrying its content's hash
/// (`kenning.<hash>.wasm`, as the build writes them) never changes meaning, so it is kept for a
/// year without asking again; any other bundle file is asked about on each use (a 304 when it
/// has not changed), so a new build is never mixed with an old one.
fn bundle_caching(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix("/pkg/")?;
    Some(if has_content_hash(name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    })
}

/// `stem.<hash>.ext` directly under `/pkg/`, the hash an MD5 in unpadded URL-safe base64.
fn has_content_hash(name: &str) -> bool {
    if name.contains('/') {
        return false;
    }
    let mut parts = name.rsplit('.');
    let (Some(_ext), Some(hash), Some(_stem)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    // An unhashed build names its split loader with a placeholder of 22 underscores.
    hash.len() == 22
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && hash.bytes().any(|b| b != b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_carrying_a_content_hash_are_kept_for_good() {
        let forever = Some("public, max-age=31536000, immutable");
        assert_eq!(
            bundle_caching("/pkg/kenning.5yQn2X0o6d3H4kQq-8s_1w.wasm"),
            forever
        );
        assert_eq!(
            bundle_caching("/pkg/__wasm_split.AAAAAAAAAAAAAAAAAAAAAA.js"),
            forever
        );
        assert_eq!(
            bundle_caching("/pkg/chunk_12.AAAAAAAAAAAAAAAAAAAAAA.wasm"),
            forever
        );
        // Unhashed builds, placeholders that were never filled, look-alikes and other paths.
        assert_eq!(bundle_caching("/pkg/kenning.wasm"), Some("no-cache"));
        assert_eq!(
            bundle_caching("/pkg/__wasm_split.______________________.js"),
            Some("no-cache")
        );
        assert_eq!(bundle_caching("/pkg/kenning.short.wasm"), Some("no-cache"));
        assert_eq!(
            bundle_caching("/pkg/kenning.AAAAAAAAAAAAAAAAAAAAA!.wasm"),
            Some("no-cache")
        );
        assert_eq!(
            bundle_caching("/pkg/snippets/x/AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.js"),
            Some("no-cache")
        );
        assert_eq!(
            bundle_caching("/pkg/AAAAAAAAAAAAAAAAAAAAAA.wasm"),
            Some("no-cache")
        );
        assert_eq!(bundle_caching("/favicon.svg"), None);
        assert_eq!(
            bundle_caching("/spaces/pkg/kenning.AAAAAAAAAAAAAAAAAAAAAA.wasm"),
            None
        );
    }
}
