//! Who is calling: the `sub` claim that the HTTP API's JWT authorizer verified.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use quote_pipeline::quote::limits::USER_ID_MAX_LEN;

/// The header that names the caller when built with the `local-identity` feature, for
/// `cargo lambda watch`, which runs no authorizer. Release builds do not have the feature, so
/// a deployed function never reads it.
#[cfg(feature = "local-identity")]
pub const LOCAL_USER_HEADER: &str = "x-local-user";

/// The caller's user id, or `None` when the request carries no usable identity.
pub fn caller(request: &Request) -> Option<String> {
    let from_token = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|jwt| jwt.claims.get("sub"))
            .cloned(),
        _ => None,
    };
    #[cfg(feature = "local-identity")]
    let from_token = from_token.or_else(|| {
        request
            .headers()
            .get(LOCAL_USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    from_token.filter(|sub| !sub.trim().is_empty() && sub.len() <= USER_ID_MAX_LEN)
}
