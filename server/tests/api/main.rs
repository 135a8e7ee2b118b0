//! Integration tests: every test starts a real server on port 0 with a fresh data directory and
//! runs once on the defaults (SQLite, Qdrant Edge) and once on PostgreSQL with pgvector
//! (`KENNING_TEST_POSTGRES_URL`, set by `scripts/test`); the vector tests also on the embedded
//! engine, and on a Qdrant server when `QDRANT_URL` is set.

mod helpers;
#[path = "../common/postgres.rs"]
mod postgres;
#[path = "../common/redis.rs"]
mod redis;

/// Expands each listed async test `fn name(backend)` into `name::on_sqlite` and `name::on_postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$name(crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// As `on_both_backends!`, plus `name::on_qdrant`: the embedded metadata store with passages and
/// points in the Qdrant server `QDRANT_URL` names; it says it was skipped when that is unset.
macro_rules! on_all_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$name(crate::helpers::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_qdrant() {
                    if std::env::var("QDRANT_URL").is_err() {
                        eprintln!("SKIPPED: QDRANT_URL is not set, so this ran on SQLite and PostgreSQL only");
                        return;
                    }
                    super::$name(crate::helpers::Backend::Qdrant).await
                }
            }
        )*
    };
}

/// `on_embedded::name` for each listed test: the embedded metadata store with passages and
/// points in the embedded engine (`--vector-store embedded`) instead of the default Qdrant Edge.
macro_rules! on_embedded_engine {
    ($($name:ident),* $(,)?) => {
        mod on_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Embedded).await
                }
            )*
        }
    };
}

/// `on_all_backends!` and `on_embedded_engine!` for one list: every store vectors can live in.
macro_rules! on_every_vector_store {
    ($($name:ident),* $(,)?) => {
        on_all_backends!($($name),*);
        on_embedded_engine!($($name),*);
    };
}

mod accounts;
mod audit;
mod bulk;
mod chat;
mod connections;
mod csrf;
mod documents;
mod embed_stub;
mod embeddings;
mod health;
mod ingestion;
mod limits;
mod mcp;
mod memories;
mod metrics;
mod openai;
mod points;
mod quality;
mod search;
mod security;
mod shared_caches;
mod sources;
mod spaces;
mod stub;
mod ui;
mod vector_stores;
