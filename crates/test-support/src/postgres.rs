//! PostgreSQL for tests: the server's URL (`PORTCULLIS_TEST_POSTGRES_URL`, default the local
//! `test` database) and a fresh schema per test, so tests running at once never see each
//! other's rows. Schemas are named `<prefix><hex>`, the prefix `PORTCULLIS_TEST_SCHEMA_PREFIX`
//! (default `t_`); `scripts/test` gives each run a prefix of its own and drops the schemas with
//! it when the run ends.

use rand_core::{OsRng, RngCore};

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// What every test schema's name starts with: `PORTCULLIS_TEST_SCHEMA_PREFIX` when it is a
/// plain identifier (lowercase letters, digits, `_`, starting with a letter), else `t_`.
pub fn schema_prefix() -> String {
    std::env::var("PORTCULLIS_TEST_SCHEMA_PREFIX")
        .ok()
        .filter(|p| {
            p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.len() <= 40
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .unwrap_or_else(|| "t_".to_owned())
}

/// Creates a schema of its own and returns a URL whose connections use it (as their
/// `search_path`); every store or gateway connected with it shares the schema, like replicas.
///
/// # Panics
/// When PostgreSQL is not running or refuses to create the schema (a broken test
/// environment).
pub async fn fresh_schema_url() -> String {
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    let schema = format!(
        "{}{}",
        schema_prefix(),
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let base = postgres_url();
    #[allow(clippy::expect_used)]
    let pool = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL is running");
    #[allow(clippy::expect_used)]
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("creating a test schema");
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}
