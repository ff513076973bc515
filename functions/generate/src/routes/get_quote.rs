//! `GET /quotes/{id}`: one of the caller's quotes. Another user's id is a 404, exactly like an
//! id that does not exist (or is not a UUID). With `?history=true`, the answer also lists
//! every price the quote had (`price_history`), read in the same query; without it the
//! history is not read.

use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::{Body, RequestExt, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use uuid::Uuid;

use crate::App;
use crate::error::ApiError;
use crate::routes::Call;
use crate::views::{PriceView, QuoteView, QuoteWithHistory, json};

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let history = wants_history(call.request)?;
    let id = Uuid::try_parse(id).map_err(|_| ApiError::not_found())?;
    if history {
        let found = app
            .store
            .get_with_history(call.owner, id)
            .await
            .map_err(ApiError::store)?;
        let (quote, superseded) = found.ok_or_else(ApiError::not_found)?;
        let current = quote.pricing.current_price();
        return Ok(json(
            StatusCode::OK,
            &QuoteWithHistory {
                quote: QuoteView::at(&quote, Utc::now()),
                price_history: current
                    .iter()
                    .chain(&superseded)
                    .map(PriceView::from)
                    .collect(),
            },
        ));
    }
    let quote = app
        .store
        .get(call.owner, id)
        .await
        .map_err(ApiError::store)?;
    let quote = quote.ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::OK, &QuoteView::at(&quote, Utc::now())))
}

/// `history`: `true` or `false` (the default); anything else is a 400 naming it.
fn wants_history(request: &lambda_http::Request) -> Result<bool, ApiError> {
    match request
        .query_string_parameters_ref()
        .and_then(|q| q.first("history"))
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::bad_field("history", "must be true or false")),
    }
}
