//! The message that carries quote ids from `generate` (and reconcile) to `score`: a versioned
//! chunk of ids, parsed strictly, since a body the score step cannot read fails its message alone.
//!
//! A message is either of pending quotes to price (`{"v": 1, "quote_ids": [..]}`, every
//! message before re-pricing existed) or, marked `"reprice": true`, of scored quotes an
//! operator has `score` price again with the model it now runs. The mark is absent unless
//! set, so the bodies of pending quotes are what they always were.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MESSAGE_VERSION: u8 = 1;
/// The most ids one message may carry.
pub const MAX_IDS_PER_MESSAGE: usize = 1000;

/// The body of a queue message: a versioned chunk of quote ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteMessage {
    pub v: u8,
    pub quote_ids: Vec<Uuid>,
    /// Scored quotes to price again (reconcile's `reprice` request), not pending ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reprice: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not a quote message: {0}")]
    Malformed(String),
    #[error("message version {0} is not supported (expected {MESSAGE_VERSION})")]
    Version(u8),
    #[error("message carries {0} quote ids (expected 1 to {MAX_IDS_PER_MESSAGE})")]
    Count(usize),
}

impl QuoteMessage {
    pub fn new(quote_ids: Vec<Uuid>) -> Self {
        QuoteMessage {
            v: MESSAGE_VERSION,
            quote_ids,
            reprice: false,
        }
    }

    /// A message of scored quotes to price again.
    pub fn reprice(quote_ids: Vec<Uuid>) -> Self {
        QuoteMessage {
            reprice: true,
            ..QuoteMessage::new(quote_ids)
        }
    }

    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let message: QuoteMessage =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if message.v != MESSAGE_VERSION {
            return Err(MessageError::Version(message.v));
        }
        if message.quote_ids.is_empty() || message.quote_ids.len() > MAX_IDS_PER_MESSAGE {
            return Err(MessageError::Count(message.quote_ids.len()));
        }
        Ok(message)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a message always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_strictly() {
        let ids = vec![Uuid::now_v7(), Uuid::now_v7()];
        let body = QuoteMessage::new(ids.clone()).to_body();
        assert_eq!(QuoteMessage::parse(&body).unwrap().quote_ids, ids);
        assert!(matches!(
            QuoteMessage::parse("not json"),
            Err(MessageError::Malformed(_))
        ));
        assert_eq!(
            QuoteMessage::parse(r#"{"v":2,"quote_ids":["0190b5d2-0000-7000-8000-000000000000"]}"#),
            Err(MessageError::Version(2))
        );
        assert_eq!(
            QuoteMessage::parse(r#"{"v":1,"quote_ids":[]}"#),
            Err(MessageError::Count(0))
        );
        assert!(QuoteMessage::parse(r#"{"v":1,"quote_ids":["nope"]}"#).is_err());
        assert!(
            QuoteMessage::parse(
                r#"{"v":1,"quote_ids":["0190b5d2-0000-7000-8000-000000000000"],"reprice":"yes"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_message_of_pending_quotes_has_the_body_it_always_had_and_a_reprice_is_marked() {
        let id: Uuid = "0190b5d2-0000-7000-8000-000000000000".parse().unwrap();
        let old = r#"{"v":1,"quote_ids":["0190b5d2-0000-7000-8000-000000000000"]}"#;
        assert_eq!(QuoteMessage::new(vec![id]).to_body(), old);
        assert_eq!(QuoteMessage::parse(old), Ok(QuoteMessage::new(vec![id])));
        let reprice = QuoteMessage::reprice(vec![id]).to_body();
        assert_eq!(
            reprice,
            r#"{"v":1,"quote_ids":["0190b5d2-0000-7000-8000-000000000000"],"reprice":true}"#
        );
        assert!(QuoteMessage::parse(&reprice).unwrap().reprice);
    }
}
