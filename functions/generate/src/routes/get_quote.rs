//! `GET /quotes/{id}`: one of the caller's quotes. Another user's id is a 404, exactly like an
//! id that does not exist (or is not a UUID). With `?explain=true`, a scored quote's answer
//! also has its `explanation`, computed on request; without it nothing is computed.

use chrono::Utc;
use lambda_http::RequestExt;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use serde::Serialize;
use uuid::Uuid;

use crate::App;
use crate::error::ApiError;
use crate::explain::ExplanationView;
use crate::routes::Call;
use crate::views::{QuoteView, json};

/// The quote, and its explanation when one was asked for.
#[derive(Serialize)]
struct Explained<'q> {
    #[serde(flatten)]
    quote: QuoteView<'q>,
    explanation: ExplanationView,
}

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let explain = wants_explanation(call.request)?;
    let id = Uuid::try_parse(id).map_err(|_| ApiError::not_found())?;
    let quote = app
        .store
        .get(call.owner, id)
        .await
        .map_err(ApiError::store)?;
    let quote = quote.ok_or_else(ApiError::not_found)?;
    let view = QuoteView::at(&quote, Utc::now());
    if !explain {
        return Ok(json(StatusCode::OK, &view));
    }
    let explanation = app.explainer.explain(&quote)?;
    Ok(json(
        StatusCode::OK,
        &Explained {
            quote: view,
            explanation,
        },
    ))
}

/// `explain`: `true` or `false` (the default); anything else is a 400 naming it.
fn wants_explanation(request: &lambda_http::Request) -> Result<bool, ApiError> {
    match request
        .query_string_parameters_ref()
        .and_then(|q| q.first("explain"))
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::bad_field("explain", "must be true or false")),
    }
}
