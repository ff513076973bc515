//! CSV imports: any bytes give quotes or line errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quote_domain::import::{MAX_ROWS, parse_csv};

fuzz_target!(|data: &[u8]| {
    let today = chrono::Utc::now().date_naive();
    match parse_csv(data, today) {
        Ok(quotes) => assert!(!quotes.is_empty() && quotes.len() <= MAX_ROWS),
        Err(errors) => assert!(!errors.is_empty()),
    }
});
