//! Applies the migrations in `migrations/` to the database at `DATABASE_URL`.

use quote_pipeline::store::PgStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is required")?;
    let pool = sqlx::PgPool::connect(&url).await?;
    PgStore::from_pool(pool).migrate().await?;
    Ok(())
}
