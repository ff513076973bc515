//! SQS message bodies as `score` reads them: a quote message or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quote_domain::message::{MAX_IDS_PER_MESSAGE, QuoteMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = QuoteMessage::parse(body) {
        assert!((1..=MAX_IDS_PER_MESSAGE).contains(&message.quote_ids.len()));
        assert_eq!(QuoteMessage::parse(&message.to_body()), Ok(message));
    }
});
