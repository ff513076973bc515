//! `GET /quotes/batches/{id}`: the progress of one of the caller's batches (the quotes of one
//! write), counted from the batch's own quotes. Another user's batch is a 404, exactly like a
//! batch that does not exist (or an id that is not a UUID).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use uuid::Uuid;

use crate::App;
use crate::error::ApiError;
use crate::routes::Call;
use crate::views::{BatchView, json};

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let id = Uuid::try_parse(id).map_err(|_| ApiError::batch_not_found())?;
    let batch = app
        .store
        .batch(call.owner, id)
        .await
        .map_err(ApiError::store)?;
    let batch = batch.ok_or_else(ApiError::batch_not_found)?;
    Ok(json(StatusCode::OK, &BatchView::from(&batch)))
}
