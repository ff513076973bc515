//! Request bodies of `POST /quotes` and `POST /quotes/generate-batch`: parsing and validation
//! never panic, and whatever validates can be priced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quote_domain::features::features;
use quote_domain::generator::{GenerateParams, generate};
use quote_domain::quote::validate_json;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(data) else {
        return;
    };
    let today = chrono::Utc::now().date_naive();
    if let Ok(input) = validate_json(&body, today) {
        assert!(features(&input, today).iter().all(|f| f.is_finite()));
    }
    if let Ok(params) = GenerateParams::from_json(&body) {
        // Bounded, so one input stays fast; the parameters are what is under test.
        let few = GenerateParams {
            count: params.count.min(3),
            ..params
        };
        for input in generate(&few) {
            assert!(features(&input, today).iter().all(|f| f.is_finite()));
        }
    }
});
