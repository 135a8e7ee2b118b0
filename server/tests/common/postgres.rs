//! A fresh PostgreSQL database per test, on the server `KENNING_TEST_POSTGRES_URL` names.

use sqlx::Connection;

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = std::env::var("KENNING_TEST_POSTGRES_URL").expect(
        "KENNING_TEST_POSTGRES_URL must point at a PostgreSQL server for the postgres half of the \
         suite; scripts/test starts one and sets it",
    );
    let name = format!("kenning_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("URL has a database path");
    format!("{base}/{name}")
}
