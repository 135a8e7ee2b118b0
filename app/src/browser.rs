//! Requests from the browser straight to the REST API (uploads and sources), for what server
//! functions cannot carry: streamed files, and calls that start background work.

/// Sends a request; the status when it succeeded, otherwise the server's own error message.
#[cfg(feature = "hydrate")]
pub async fn fetch(url: &str, init: &web_sys::RequestInit) -> Result<u16, String> {
    use crate::api::ErrorBody;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    let window = web_sys::window().ok_or_else(|| "No browser window.".to_string())?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(url, init))
        .await
        .map_err(|_| "The server could not be reached.".to_string())?
        .dyn_into()
        .map_err(|_| "Unexpected response.".to_string())?;
    if response.ok() {
        return Ok(response.status());
    }
    let text = match response.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_string()),
        Err(_) => None,
    }
    .unwrap_or_default();
    Err(serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| format!("The request failed (HTTP {}).", response.status())))
}
