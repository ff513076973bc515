//! `GET /quotes`: a page of the caller's quotes, newest first, filtered by the query (a
//! status, a coverage type, one batch).

use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::{Body, RequestExt, Response};
use quote_pipeline::ports::{Cursor, ListFilter, MAX_PAGE_SIZE, QuoteQueue, QuoteStore};
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::Call;
use crate::views::{QuotePage, QuoteView, json};
use crate::{App, DEFAULT_PAGE_SIZE};

pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let filter = filter(call.request)?;
    let page = app
        .store
        .list(call.owner, &filter)
        .await
        .map_err(ApiError::store)?;
    let now = Utc::now();
    Ok(json(
        StatusCode::OK,
        &QuotePage {
            quotes: page.quotes.iter().map(|q| QuoteView::at(q, now)).collect(),
            next_cursor: page.next.map(|c| c.encode()),
        },
    ))
}

/// The query's filter; a 400 naming the first bad or unknown parameter.
fn filter(request: &lambda_http::Request) -> Result<ListFilter, ApiError> {
    let mut filter = ListFilter {
        limit: DEFAULT_PAGE_SIZE,
        ..ListFilter::default()
    };
    let query = request.query_string_parameters();
    for (name, value) in query.iter() {
        match name {
            "status" => {
                filter.status = Some(value.parse().map_err(|m| ApiError::bad_field(name, m))?)
            }
            "coverage_type" => {
                filter.coverage_type =
                    Some(value.parse().map_err(|m| ApiError::bad_field(name, m))?)
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_field(
                            name,
                            format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                        )
                    })?;
            }
            "batch_id" => {
                filter.batch = Some(
                    Uuid::try_parse(value)
                        .map_err(|_| ApiError::bad_field(name, "must be a batch id (a UUID)"))?,
                )
            }
            "cursor" => {
                filter.after = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::bad_field(name, "is not a cursor this API returned")
                })?)
            }
            _ => {
                return Err(ApiError::bad_field(
                    name,
                    "is not a query parameter of this route",
                ));
            }
        }
    }
    Ok(filter)
}
