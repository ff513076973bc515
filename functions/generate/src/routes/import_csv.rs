//! `POST /quotes/import`: a CSV file of quotes, imported whole or not at all.

use chrono::Utc;
use lambda_http::{Body, Response};
use quote_pipeline::import;
use quote_pipeline::ports::{QuoteQueue, QuoteStore};

use crate::error::ApiError;
use crate::request::body_bytes;
use crate::routes::Call;
use crate::write::create_quotes;
use crate::{App, MAX_CSV_BYTES};

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let data = body_bytes(call.request, "text/csv", MAX_CSV_BYTES)?;
    let inputs =
        import::parse_csv(data, Utc::now().date_naive()).map_err(ApiError::invalid_lines)?;
    create_quotes(app, call, inputs).await
}
