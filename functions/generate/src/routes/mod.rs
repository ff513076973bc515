//! The route table: a request's method and path parsed once into a [`Route`], one file per
//! route. An unknown path is a 404; a known path with another method is a 405 whose `Allow`
//! header lists the methods the table has for it.

pub mod create_quote;
pub mod generate_batch;
pub mod get_batch;
pub mod get_quote;
pub mod import_csv;
pub mod list_quotes;

use std::time::Instant;

use lambda_http::Request;
use lambda_http::http::{Method, header};
use quote_pipeline::metrics::Metrics;

use crate::error::{ApiError, ErrorCode};

/// One identified call to a route: who makes it, its idempotency key if it has one, the
/// request, the invocation's metrics and its deadline.
pub struct Call<'r> {
    pub owner: &'r str,
    pub idempotency_key: Option<String>,
    pub request: &'r Request,
    pub metrics: &'r mut Metrics,
    pub deadline: Instant,
}

/// A route the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'p> {
    /// `POST /quotes`
    CreateQuote,
    /// `POST /quotes/generate-batch`
    GenerateBatch,
    /// `POST /quotes/import`
    ImportCsv,
    /// `GET /quotes`
    ListQuotes,
    /// `GET /quotes/{id}`, with the id as the path has it (not yet parsed).
    GetQuote(&'p str),
    /// `GET /quotes/batches/{id}`, with the id as the path has it (not yet parsed).
    GetBatch(&'p str),
}

impl<'p> Route<'p> {
    /// The route for `method` on `path`; a 404 for an unknown path, a 405 naming the allowed
    /// methods for a known one.
    pub fn parse(method: &Method, path: &'p str) -> Result<Route<'p>, ApiError> {
        let routes = Self::on_path(path)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such route"))?;
        if let Some((_, route)) = routes.iter().find(|(m, _)| m == method) {
            return Ok(*route);
        }
        let mut error = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        );
        let allow: Vec<&str> = routes.iter().map(|(m, _)| m.as_str()).collect();
        error.headers.push((header::ALLOW, allow.join(", ")));
        Err(error)
    }

    /// The table: each path's routes, by method.
    fn on_path(path: &'p str) -> Option<Vec<(Method, Route<'p>)>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["quotes"] => vec![
                (Method::GET, Route::ListQuotes),
                (Method::POST, Route::CreateQuote),
            ],
            ["quotes", "generate-batch"] => vec![(Method::POST, Route::GenerateBatch)],
            ["quotes", "import"] => vec![(Method::POST, Route::ImportCsv)],
            ["quotes", "batches", id] => vec![(Method::GET, Route::GetBatch(id))],
            ["quotes", id] => vec![(Method::GET, Route::GetQuote(id))],
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_found_by_its_method_and_path() {
        let cases = [
            (Method::POST, "/quotes", Route::CreateQuote),
            (Method::GET, "/quotes/", Route::ListQuotes),
            (Method::POST, "/quotes/generate-batch", Route::GenerateBatch),
            (Method::POST, "/quotes/import", Route::ImportCsv),
            (Method::GET, "/quotes/abc", Route::GetQuote("abc")),
            (Method::GET, "/quotes/batches/abc", Route::GetBatch("abc")),
        ];
        for (method, path, route) in cases {
            assert_eq!(Route::parse(&method, path), Ok(route), "{method} {path}");
        }
    }

    #[test]
    fn a_wrong_method_names_the_allowed_ones_and_an_unknown_path_is_a_404() {
        let error = Route::parse(&Method::DELETE, "/quotes").unwrap_err();
        assert_eq!(error.code, ErrorCode::MethodNotAllowed);
        assert_eq!(error.headers, [(header::ALLOW, "GET, POST".to_string())]);
        let error = Route::parse(&Method::GET, "/quotes/import").unwrap_err();
        assert_eq!(error.headers, [(header::ALLOW, "POST".to_string())]);
        for path in ["/", "/nowhere", "/quotes/a/b"] {
            let error = Route::parse(&Method::GET, path).unwrap_err();
            assert_eq!(error.code, ErrorCode::NotFound, "{path}");
        }
    }
}
