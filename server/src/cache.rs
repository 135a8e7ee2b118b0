//! Two cache levels: a bounded in-process moka cache (L1) in front of Redis (L2, when
//! `REDIS_URL` is set), so an instance can reuse what another computed. Keys carry everything
//! that makes a value valid (a space's version among them), so a write anywhere invalidates
//! everywhere without messages. Redis down: L1 only, no errors.

use crate::redis_link::RedisLink;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// A named cache of `V` by string key.
pub struct TieredCache<V> {
    name: &'static str,
    l2_name: &'static str,
    l1: moka::future::Cache<String, Arc<V>>,
    l2: Option<Arc<RedisLink>>,
    ttl: Duration,
}

impl<V> TieredCache<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An L1-only cache of at most `capacity` entries, each living `ttl`. `l2_name` labels the
    /// Redis level in the cache metrics.
    pub fn new(name: &'static str, l2_name: &'static str, capacity: u64, ttl: Duration) -> Self {
        Self {
            name,
            l2_name,
            l1: moka::future::Cache::builder()
                .max_capacity(capacity.max(1))
                .time_to_live(ttl)
                .build(),
            l2: None,
            ttl,
        }
    }

    /// Adds Redis as the second level.
    pub fn with_redis(mut self, link: Arc<RedisLink>) -> Self {
        self.l2 = Some(link);
        self
    }

    fn redis_key(&self, key: &str) -> String {
        format!(
            "kenning:cache:{}:{}",
            self.name,
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }

    /// L1, then L2 (a hit there is copied into L1); counted per level.
    pub async fn get(&self, key: &str) -> Option<Arc<V>> {
        let metrics = crate::metrics::global();
        if let Some(v) = self.l1.get(key).await {
            metrics.record_cache(self.name, true);
            return Some(v);
        }
        metrics.record_cache(self.name, false);
        let link = self.l2.as_ref()?;
        let redis_key = self.redis_key(key);
        let bytes: Option<Vec<u8>> = link
            .run(|mut conn| async move {
                redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await
            .flatten();
        let value = bytes.and_then(|b| serde_json::from_slice::<V>(&b).ok());
        metrics.record_cache(self.l2_name, value.is_some());
        let value = Arc::new(value?);
        self.l1.insert(key.to_string(), value.clone()).await;
        Some(value)
    }

    /// Stores in L1, and in L2 in the background (a slow Redis never delays the caller).
    pub async fn insert(&self, key: String, value: Arc<V>) {
        if let Some(link) = &self.l2 {
            if let Ok(bytes) = serde_json::to_vec(value.as_ref()) {
                let (link, redis_key, ttl) = (link.clone(), self.redis_key(&key), self.ttl);
                tokio::spawn(async move {
                    link.run(|mut conn| async move {
                        redis::cmd("SET")
                            .arg(&redis_key)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ttl.as_millis().max(1) as u64)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
                });
            }
        }
        self.l1.insert(key, value).await;
    }
}
