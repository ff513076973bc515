//! `GET /quotes/{id}`: one of the caller's quotes. Another user's id is a 404, exactly like an
//! id that does not exist (or is not a UUID).

use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use uuid::Uuid;

use crate::App;
use crate::error::ApiError;
use crate::routes::Call;
use crate::views::{QuoteView, json};

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let id = Uuid::try_parse(id).map_err(|_| ApiError::not_found())?;
    let quote = app
        .store
        .get(call.owner, id)
        .await
        .map_err(ApiError::store)?;
    let quote = quote.ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::OK, &QuoteView::at(&quote, Utc::now())))
}
