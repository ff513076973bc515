//! Money as a client sees it: whole cents of [`CURRENCY`], written as a decimal string with two
//! places (`"660.16"`), never as a binary float.
//!
//! The model prices in f32, whose values carry binary noise (`660.1643676757812`). The store
//! keeps that unrounded output, for explanations and audits; a price is rounded to cents here,
//! and only here, when it is answered, so both scoring modes (which give the same bits) answer
//! the same cents.
//!
//! Rounding is to the nearest cent, an exact half cent away from zero, on the float's exact
//! binary value: `0.125` (exactly 12.5 cents) is `"0.13"`, while `0.015`, whose binary value
//! is 1.4999... cents, is `"0.01"`. The integer arithmetic below is exact for every finite
//! f64; `(amount * 100.0).round()` is not (it rounds twice, and `0.015 * 100.0` is `1.5`).

use std::fmt;

use serde::{Serialize, Serializer};

/// The currency of every amount of the pipeline: a quote's `estimated_amount`, the training
/// set's premiums and so the model's.
pub const CURRENCY: &str = "USD";

/// An amount of money in whole cents of [`CURRENCY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    cents: i64,
}

/// Why a float is not an amount of money.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0} is not a finite amount")]
    NotFinite(f64),
    #[error("{0} is beyond the largest amount of cents an i64 holds")]
    TooLarge(f64),
}

impl Money {
    pub const fn from_cents(cents: i64) -> Money {
        Money { cents }
    }

    pub const fn cents(self) -> i64 {
        self.cents
    }

    /// `amount` (in currency units) rounded to the nearest cent, half a cent away from zero.
    pub fn from_f64(amount: f64) -> Result<Money, MoneyError> {
        if !amount.is_finite() {
            return Err(MoneyError::NotFinite(amount));
        }
        // |amount| = mantissa * 2^exponent, exactly.
        let bits = amount.abs().to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, exponent) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), biased - 1075)
        };
        // Below 2^60: room in a u128 for every shift used below.
        let hundredfold = u128::from(mantissa) * 100;
        let cents = if exponent >= 0 {
            // A whole number of units: no rounding, only a bound.
            if exponent >= 64 {
                return Err(MoneyError::TooLarge(amount));
            }
            hundredfold << exponent
        } else {
            match exponent.unsigned_abs() {
                // Less than half a cent, however large the mantissa.
                shift if shift > 64 => 0,
                // Adding half of the divisor rounds an exact half up.
                shift => (hundredfold + (1 << (shift - 1))) >> shift,
            }
        };
        let cents = i64::try_from(cents).map_err(|_| MoneyError::TooLarge(amount))?;
        Ok(Money {
            cents: if amount < 0.0 { -cents } else { cents },
        })
    }
}

/// `"660.16"`, `"-0.05"`: units, a point and two digits of cents.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.cents < 0 { "-" } else { "" };
        let cents = self.cents.unsigned_abs();
        write!(f, "{sign}{}.{:02}", cents / 100, cents % 100)
    }
}

/// As its decimal string: a JSON number would be read back as a binary float.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(amount: f64) -> String {
        Money::from_f64(amount).unwrap().to_string()
    }

    #[test]
    fn a_model_premium_is_rounded_to_the_nearest_cent() {
        assert_eq!(text(660.1643676757812), "660.16");
        assert_eq!(text(853.898_437_5), "853.90");
        assert_eq!(text(0.0), "0.00");
        assert_eq!(text(-0.0), "0.00");
        assert_eq!(text(0.004_999), "0.00");
        assert_eq!(text(7.0), "7.00");
        assert_eq!(text(1234.5), "1234.50");
    }

    #[test]
    fn an_exact_half_cent_rounds_away_from_zero() {
        // f32 values that are exactly half a cent, as the model can give them.
        for (amount, expected) in [
            (0.125_f32, "0.13"),
            (0.375, "0.38"),
            (853.125, "853.13"),
            (853.875, "853.88"),
            (4_096.625, "4096.63"),
        ] {
            assert_eq!(text(f64::from(amount)), expected, "{amount}");
        }
        assert_eq!(text(-0.125), "-0.13");
        // Just below the half: down, just above: up.
        assert_eq!(text(0.125_f64.next_down()), "0.12");
        assert_eq!(text(0.125_f64.next_up()), "0.13");
    }

    #[test]
    fn rounding_reads_the_exact_binary_value_and_rounds_once() {
        // 0.015 is 0.01499999999999999944... exactly: below half a cent, although
        // 0.015 * 100.0 is exactly 1.5 in f64 and would round up.
        assert_eq!(0.015_f64 * 100.0, 1.5);
        assert_eq!(text(0.015), "0.01");
        assert_eq!(text(0.045), "0.04");
        // An f32's value times 100 is exact in f64, so a model output is unaffected.
        assert_eq!(text(f64::from(0.015_f32)), "0.01");
        assert_eq!(text(f64::from(0.035_f32)), "0.04");
        // Subnormal and tiny amounts are no cents.
        assert_eq!(text(f64::from_bits(1)), "0.00");
        assert_eq!(text(f64::MIN_POSITIVE), "0.00");
    }

    #[test]
    fn large_amounts_are_exact_up_to_the_bound_and_refused_beyond_it() {
        assert_eq!(text(50_000_000.0), "50000000.00");
        assert_eq!(text(123_456_789_012.345), "123456789012.35");
        assert_eq!(text(f64::from(16_777_216_f32)), "16777216.00");
        // 2^53 units: every cent of it fits in an i64.
        assert_eq!(text(9_007_199_254_740_992.0 / 100.0), "90071992547409.92");
        let largest = i64::MAX as f64 / 100.0;
        assert_eq!(Money::from_f64(largest.next_down()).map(|_| ()), Ok(()));
        assert_eq!(
            Money::from_f64(1e17),
            Err(MoneyError::TooLarge(1e17)),
            "1e19 cents is beyond i64"
        );
        assert_eq!(
            Money::from_f64(f64::MAX),
            Err(MoneyError::TooLarge(f64::MAX))
        );
        assert!(matches!(
            Money::from_f64(f64::NAN),
            Err(MoneyError::NotFinite(_))
        ));
        assert_eq!(
            Money::from_f64(f64::INFINITY),
            Err(MoneyError::NotFinite(f64::INFINITY))
        );
    }

    #[test]
    fn money_is_written_as_a_decimal_string() {
        assert_eq!(
            serde_json::to_string(&Money::from_cents(66_016)).unwrap(),
            r#""660.16""#
        );
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
        assert_eq!(
            Money::from_cents(i64::MIN).to_string(),
            "-92233720368547758.08"
        );
        assert_eq!(Money::from_f64(660.16).unwrap().cents(), 66_016);
    }
}
