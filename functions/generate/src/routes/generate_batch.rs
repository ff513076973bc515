//! `POST /quotes/generate-batch`: quotes made by the generator from a JSON object's parameters.

use lambda_http::{Body, Response};
use quote_pipeline::generator::{self, GenerateParams};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};

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
    let params = GenerateParams::from_json(&body).map_err(ApiError::invalid_fields)?;
    create_quotes(app, call, generator::generate(&params)).await
}
