//! The HTTP client one benchmark drives a server with, and what each request costs.

use super::*;

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
}

impl Client {
    pub(super) async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// One request whose JSON body was encoded beforehand; the time covers sending it and
    /// reading the whole response, not the load generator's own JSON work on either side, so
    /// the figure is the server's and the loopback's alone.
    pub(super) async fn timed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (Duration, anyhow::Result<()>) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let started = Instant::now();
        let sent = match req.send().await {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let result = match sent {
            Err(e) => Err(e.into()),
            Ok((status, bytes)) if !status.is_success() => Err(anyhow::anyhow!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
            // A success must carry JSON (a delete's 204 carries nothing).
            Ok((_, bytes)) if bytes.is_empty() => Ok(()),
            Ok((_, bytes)) => serde_json::from_slice::<Value>(&bytes)
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{path}: not JSON: {e}")),
        };
        (took, result)
    }

    pub(super) async fn upload(
        &self,
        space: &str,
        name: &str,
        text: String,
    ) -> anyhow::Result<Value> {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::text(text).file_name(name.to_string()),
        );
        let r = self
            .http
            .post(format!("{}/api/v1/spaces/{space}/documents", self.base))
            .multipart(form)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("upload: HTTP {status}: {v}");
        }
        Ok(v)
    }

    pub(super) async fn wait_ready(&self, space: &str, ids: &[String]) -> anyhow::Result<u64> {
        let mut passages = 0;
        for id in ids {
            loop {
                let d = self
                    .json(
                        reqwest::Method::GET,
                        &format!("/api/v1/spaces/{space}/documents/{id}"),
                        None,
                    )
                    .await?;
                match d["status"].as_str() {
                    Some("ready") => {
                        passages += d["chunk_count"].as_u64().unwrap_or(0);
                        break;
                    }
                    Some("failed") => bail!("document {id} failed: {}", d["error"]),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(passages)
    }

    /// Creates a space with a unique name starting `prefix` and returns its id.
    pub(super) async fn create_space(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
        Ok(self
            .json(
                reqwest::Method::POST,
                "/api/v1/spaces",
                Some(json!({ "name": name })),
            )
            .await?["id"]
            .as_str()
            .context("space id")?
            .to_string())
    }

    pub(super) async fn seed(
        &self,
        documents: usize,
        bytes: usize,
    ) -> anyhow::Result<(String, u64, Duration)> {
        let space = self.create_space("bench").await?;
        let started = Instant::now();
        let mut ids = Vec::new();
        for i in 0..documents {
            let doc = self
                .upload(&space, &format!("doc-{i}.md"), document(i as u64, bytes))
                .await?;
            ids.push(doc["id"].as_str().context("document id")?.to_string());
        }
        let passages = self.wait_ready(&space, &ids).await?;
        Ok((space, passages, started.elapsed()))
    }

    /// Asks and times the stream: `(time to first token, total)`.
    pub(super) async fn ask(
        &self,
        space: &str,
        question: &str,
    ) -> anyhow::Result<(Duration, Duration)> {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}/api/v1/spaces/{space}/chat", self.base))
            .json(&json!({ "question": question }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("chat: HTTP {}", r.status());
        }
        let mut first = None;
        let mut body = r.bytes_stream();
        let mut seen = String::new();
        while let Some(piece) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&piece?));
            if first.is_none() && seen.contains("event: token") {
                first = Some(started.elapsed());
            }
        }
        if seen.contains("event: error") || !seen.contains("event: done") {
            bail!("the answer did not complete");
        }
        Ok((
            first.unwrap_or_else(|| started.elapsed()),
            started.elapsed(),
        ))
    }
}
