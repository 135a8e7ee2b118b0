//! One connection to Redis for everything shared across instances (rate limits, the second cache
//! level). Redis is never required: every call has a short time limit, a failed call means "decide
//! in this process", and the link reconnects by itself; `/health` shows its state.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A reconnecting connection with a per-call time limit and a remembered outcome.
pub struct RedisLink {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RedisLink {
    /// Parses the URL; connecting happens in the background (`spawn_connect`).
    pub fn open(url: &str, timeout: Duration) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        Ok(Arc::new(Self {
            client,
            conn: Mutex::new(None),
            timeout,
            healthy: AtomicBool::new(false),
            last_error: Mutex::new(Some("connecting".into())),
        }))
    }

    /// Connects, retrying every 2 s until Redis answers (the connection manager reconnects by
    /// itself afterwards); stops when the link is dropped.
    pub fn spawn_connect(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(link) = weak.upgrade() else { break };
                match link.connect().await {
                    Ok(()) => {
                        link.mark(Ok(()));
                        break;
                    }
                    Err(e) => link.mark(Err(e)),
                }
                drop(link);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    async fn connect(&self) -> Result<(), String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout.max(Duration::from_secs(1)))
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        match tokio::time::timeout(
            Duration::from_secs(3),
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        {
            Ok(Ok(conn)) => {
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connecting timed out".into()),
        }
    }

    fn mark(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis answers; limits and caches are shared");
                }
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unavailable; limits and caches fall back to this process");
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    }

    /// Runs one call within the time limit; `None` (and the link marked down) if it fails.
    pub async fn run<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            self.mark(Err("not connected".into()));
            return None;
        };
        match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => {
                self.mark(Ok(()));
                Some(value)
            }
            Ok(Err(e)) => {
                self.mark(Err(e.to_string()));
                None
            }
            Err(_) => {
                self.mark(Err(format!("no answer within {:?}", self.timeout)));
                None
            }
        }
    }

    /// Pings Redis for `/health`.
    pub async fn ping(&self) -> Result<(), String> {
        let pong = self
            .run(
                |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
            )
            .await;
        match pong {
            Some(_) => Ok(()),
            None => Err(self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default()),
        }
    }
}
