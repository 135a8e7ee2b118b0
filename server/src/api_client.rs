//! The HTTP client the CLI uses to drive a running Kenning through its API.

use std::time::Duration;

/// A client that sends the API key (if any) with every request, with bounded waits.
pub fn client(
    token: Option<&secrecy::SecretString>,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    use secrecy::ExposeSecret;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()?)
}

/// The body of a successful answer, or the server's own error message.
pub async fn ok(r: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .unwrap_or("no error message");
    anyhow::bail!("{status}: {message}")
}
