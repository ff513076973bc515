//! The events Lambda hands the functions, built as Lambda builds them: an SQS batch, an API
//! Gateway HTTP API (v2) request, an invocation context.

use aws_sdk_sqs::types::Message;
use uuid::Uuid;

/// The SQS event Lambda's event source mapping would deliver for `messages`.
pub fn sqs_event(messages: &[Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:quotes".into());
            record.aws_region = Some("us-east-1".into());
            record
        })
        .collect();
    event
}

/// An invocation context with `budget` left before its deadline.
pub fn lambda_context(budget: std::time::Duration) -> lambda_runtime::Context {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let mut context = lambda_runtime::Context::default();
    context.request_id = Uuid::now_v7().to_string();
    context.deadline = (now + budget).as_millis() as u64;
    context
}

/// An API Gateway HTTP API (v2) event as Lambda delivers it to `generate`: a JWT-authorized
/// caller when `user` is set.
pub fn http_event(
    method: &str,
    path_and_query: &str,
    user: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut headers = serde_json::Map::new();
    if let Some(ct) = content_type {
        headers.insert("content-type".into(), ct.into());
    }
    let mut context = serde_json::json!({
        "accountId": "123456789012", "apiId": "api", "domainName": "example.com",
        "domainPrefix": "example", "requestId": "req-1", "routeKey": "$default",
        "stage": "$default", "time": "27/Nov/2026:00:00:00 +0000", "timeEpoch": 1795737600000u64,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "test"}
    });
    if let Some(sub) = user {
        context["authorizer"] =
            serde_json::json!({"jwt": {"claims": {"sub": sub}, "scopes": null}});
    }
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers, "requestContext": context, "body": body, "isBase64Encoded": false
    })
    .to_string()
}
