//! Reading a request: its body by content type and size, its idempotency key, and the digest
//! that tells a repeat of it from another request.

use lambda_http::http::header;
use lambda_http::{Request, RequestExt};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::{MAX_IDEMPOTENCY_KEY_LEN, MAX_JSON_BYTES};

/// The `Idempotency-Key` header, if present: 1 to 255 visible ASCII characters.
pub fn idempotency_key(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::bad_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// A digest of what makes two requests the same: route, content type and body.
pub fn request_hash(request: &Request) -> [u8; 32] {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [
        request.method().as_str().as_bytes(),
        request.raw_http_path().as_bytes(),
        content_type,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(request.body().as_ref());
    hash.finalize().into()
}

/// The body, if its content type is `expected` and it is within `limit` bytes.
pub fn body_bytes<'r>(
    request: &'r Request,
    expected: &str,
    limit: usize,
) -> Result<&'r [u8], ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(expected) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("the body must be {expected}, not {:?}", content_type),
        ));
    }
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > limit {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the body is {} bytes; the limit is {limit}", bytes.len()),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingBody,
            "a request body is required",
        ));
    }
    Ok(bytes)
}

/// The body as a JSON object.
pub fn json_object(
    request: &Request,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = body_bytes(request, "application/json", MAX_JSON_BYTES)?;
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}
