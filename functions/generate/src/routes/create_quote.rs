//! `POST /quotes`: one quote, as a JSON object.

use chrono::Utc;
use lambda_http::{Body, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use quote_pipeline::quote;

use crate::App;
use crate::error::ApiError;
use crate::request::json_object;
use crate::routes::Call;
use crate::write::create_quotes;

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let body = json_object(call.request)?;
    let input =
        quote::validate_json(&body, Utc::now().date_naive()).map_err(ApiError::invalid_fields)?;
    create_quotes(app, call, vec![input]).await
}
