//! `GET /quotes/{id}`: one of the caller's quotes. Another user's id is a 404, exactly like an
//! id that does not exist (or is not a UUID). With `?explain=true`, a scored quote's answer
//! also has its `explanation`, computed on request; with `?history=true`, every price the
//! quote had (`price_history`), read in the same query. Without them nothing more is read or
//! computed.

use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::{Body, RequestExt, Response};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use serde::Serialize;
use uuid::Uuid;

use crate::App;
use crate::error::ApiError;
use crate::explain::ExplanationView;
use crate::routes::Call;
use crate::views::{PriceView, QuoteView, json};

/// The quote, with what the query asked for besides.
#[derive(Serialize)]
struct Answer<'q> {
    #[serde(flatten)]
    quote: QuoteView<'q>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<ExplanationView>,
    /// Newest first, the current price (if scored) first.
    #[serde(skip_serializing_if = "Option::is_none")]
    price_history: Option<Vec<PriceView<'q>>>,
}

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let explain = flag(call.request, "explain")?;
    let history = flag(call.request, "history")?;
    let id = Uuid::try_parse(id).map_err(|_| ApiError::not_found())?;
    let (quote, superseded) = if history {
        let found = app
            .store
            .get_with_history(call.owner, id)
            .await
            .map_err(ApiError::store)?;
        let (quote, superseded) = found.ok_or_else(ApiError::not_found)?;
        (quote, Some(superseded))
    } else {
        let found = app
            .store
            .get(call.owner, id)
            .await
            .map_err(ApiError::store)?;
        (found.ok_or_else(ApiError::not_found)?, None)
    };
    let explanation = match explain {
        true => Some(app.explainer.explain(&quote)?),
        false => None,
    };
    let current = quote.pricing.current_price();
    let price_history = superseded.as_ref().map(|superseded| {
        current
            .iter()
            .chain(superseded)
            .map(PriceView::from)
            .collect()
    });
    Ok(json(
        StatusCode::OK,
        &Answer {
            quote: QuoteView::at(&quote, Utc::now()),
            explanation,
            price_history,
        },
    ))
}

/// The query flag `name` (`explain`, `history`): `true` or `false` (the default); anything
/// else is a 400 naming it.
fn flag(request: &lambda_http::Request, name: &str) -> Result<bool, ApiError> {
    match request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::bad_field(name, "must be true or false")),
    }
}
