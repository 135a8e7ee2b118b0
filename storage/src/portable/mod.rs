//! The metadata store's SQL, written once for every backend.
//!
//! Each query here runs unchanged on SQLite and PostgreSQL: placeholders are `$N` (sqlx binds
//! them by number on both), a NULL-safe match is `IS NOT DISTINCT FROM` (SQLite 3.39+) and
//! columns read as text go through `CAST(.. AS TEXT)`. What really differs between the two
//! backends is named, not copied: each backend module holds only its dialect and what it does
//! its own way (taking a job under lease, keyword search, the first account). The module that invokes [`portable_store!`] has in scope:
//!
//! - the row aliases (`SpaceRow`, `DocumentRow`, `SourceRow`, …) over its id and time types,
//!   and `Id`;
//! - `id(Uuid)`, `opt_id(Option<Uuid>)`, `time(DateTime<Utc>)`, `later(Duration)` (when a lease
//!   taken now runs out), `uuid_of(Id)` and `superseded(rows)`, which turn values into and out
//!   of the backend's column types;
//! - the SQL fragments `NOW` (the current time as the backend stores it), `MINUTE_AGO`,
//!   `FOR_UPDATE` (row locks where the backend has them), `JSONB` (a parameter's cast into a
//!   JSON column), `SPACE_NAME_IS` and `EMAIL_IS` (case-insensitive matches on `$1`);
//! - the inherent methods `write_tx` (a transaction that writes, begun so that it does not
//!   fail half-way on a lock) and those for the operations each backend does its own way:
//!   `claim`, `renew`, `complete`, `match_keywords`, `fetch_chunks`, `insert_user` and
//!   `run_migrations`.

mod accounts;
mod conversations;
mod documents;
mod sources;
mod spaces;

pub(crate) use accounts::accounts;
pub(crate) use conversations::{audit_log, conversations};
pub(crate) use documents::{documents, job_queue};
pub(crate) use sources::sources;
pub(crate) use spaces::{members, spaces};

/// Implements every repository and [`crate::MetadataStore`] for a backend from the portable SQL
/// and the backend's dialect.
macro_rules! portable_store {
    ($store:ty, $backend:literal) => {
        $crate::portable::spaces!($store);
        $crate::portable::members!($store);
        $crate::portable::documents!($store);
        $crate::portable::job_queue!($store);
        $crate::portable::conversations!($store);
        $crate::portable::audit_log!($store);
        $crate::portable::accounts!($store);
        $crate::portable::sources!($store);

        #[async_trait::async_trait]
        impl MetadataStore for $store {
            fn backend_name(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                self.run_migrations().await
            }
        }
    };
}

pub(crate) use portable_store;
