//! Quotes from a CSV file: a header row naming the quote's fields, then one quote a line.
//!
//! An import is atomic: one bad line rejects the whole file, with every bad line named, and
//! nothing is written. A client fixes the file and sends it again, and never has to work out
//! which half of it was taken.

use chrono::NaiveDate;
use serde::Serialize;

use crate::quote::{INPUT_FIELDS, QuoteInput, Raw, validate};

/// The most quotes one file may hold: one bulk insert, like a generated batch.
pub const MAX_ROWS: usize = 1000;
/// The most line errors an answer lists.
const MAX_REPORTED: usize = 100;

/// A problem with the file, located by its line (the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl LineError {
    fn new(line: u64, field: Option<&str>, message: impl Into<String>) -> Self {
        LineError {
            line,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Parses and validates a whole file; `today` bounds founding dates.
pub fn parse_csv(data: &[u8], today: NaiveDate) -> Result<Vec<QuoteInput>, Vec<LineError>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(data);
    let header = match reader.headers() {
        Ok(h) if h.iter().any(|c| !c.trim().is_empty()) => h.clone(),
        Ok(_) => {
            return Err(vec![LineError::new(
                1,
                None,
                "the file is empty: a header row is required",
            )]);
        }
        Err(e) => return Err(vec![LineError::new(1, None, csv_message(&e))]),
    };
    let columns: Vec<String> = header.iter().map(|c| c.trim().to_owned()).collect();
    let mut errors: Vec<LineError> = columns
        .iter()
        .filter(|c| !INPUT_FIELDS.contains(&c.as_str()))
        .map(|c| LineError::new(1, Some(c), "is not a quote field"))
        .chain(
            INPUT_FIELDS
                .iter()
                .filter(|f| !columns.iter().any(|c| c == *f))
                .map(|f| LineError::new(1, Some(f), "column is missing")),
        )
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let index = |name: &str| columns.iter().position(|c| c == name);

    let mut quotes = Vec::new();
    let mut invalid_lines = 0usize;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                invalid_lines += 1;
                push(&mut errors, LineError::new(line, None, csv_message(&e)));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if quotes.len() + invalid_lines == MAX_ROWS {
            return Err(vec![LineError::new(
                line,
                None,
                format!("the file holds more than {MAX_ROWS} quotes"),
            )]);
        }
        let cell = |name: &str| {
            index(name)
                .and_then(|i| record.get(i))
                .map_or(Raw::Missing, Raw::Text)
        };
        match validate(cell, today) {
            Ok(input) => quotes.push(input),
            Err(field_errors) => {
                invalid_lines += 1;
                for e in field_errors {
                    push(&mut errors, LineError::new(line, Some(&e.field), e.message));
                }
            }
        }
    }
    if !errors.is_empty() {
        if errors.len() == MAX_REPORTED {
            errors.push(LineError::new(0, None, "further errors are not listed"));
        }
        return Err(errors);
    }
    if quotes.is_empty() {
        return Err(vec![LineError::new(2, None, "the file holds no quotes")]);
    }
    Ok(quotes)
}

fn push(errors: &mut Vec<LineError>, error: LineError) {
    if errors.len() < MAX_REPORTED {
        errors.push(error);
    }
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} cells where the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "coverage_type,coverage_level,estimated_amount,user_age,annual_revenue,num_employees,founded_at\n";

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    #[test]
    fn parses_good_lines_with_columns_in_any_order() {
        let csv = "user_age,coverage_type,coverage_level,estimated_amount,annual_revenue,num_employees,founded_at\n\
                   40,life,basic,100000,500000,5,2010-01-01\n\
                   33, health ,premium,20000,0,1,2026-06-01\n";
        let quotes = parse_csv(csv.as_bytes(), today()).unwrap();
        assert_eq!(quotes.len(), 2);
        assert_eq!(quotes[1].user_age, 33);
    }

    #[test]
    fn one_bad_line_rejects_the_file_and_is_named() {
        let csv = format!(
            "{HEADER}life,basic,100000,40,500000,5,2010-01-01\n\
             life,gold,100000,40,500000,0,2010-01-01\n\
             life,basic,100000,40\n"
        );
        let errors = parse_csv(csv.as_bytes(), today()).unwrap_err();
        let located: Vec<(u64, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.field.as_deref()))
            .collect();
        assert_eq!(
            located,
            [
                (3, Some("coverage_level")),
                (3, Some("num_employees")),
                (4, None)
            ]
        );
    }

    #[test]
    fn header_problems_are_named() {
        let errors = parse_csv(b"coverage_type,colour\n", today()).unwrap_err();
        assert!(errors.iter().all(|e| e.line == 1));
        assert!(errors.iter().any(|e| e.field.as_deref() == Some("colour")));
        assert!(
            errors
                .iter()
                .any(|e| e.field.as_deref() == Some("founded_at"))
        );
        assert_eq!(parse_csv(b"", today()).unwrap_err()[0].line, 1);
        assert_eq!(
            parse_csv(HEADER.as_bytes(), today()).unwrap_err()[0].line,
            2
        );
    }

    #[test]
    fn too_many_rows_are_refused() {
        let line = "life,basic,100000,40,500000,5,2010-01-01\n";
        let csv = format!("{HEADER}{}", line.repeat(MAX_ROWS + 1));
        let errors = parse_csv(csv.as_bytes(), today()).unwrap_err();
        assert!(errors[0].message.contains("more than 1000"));
        let csv = format!("{HEADER}{}", line.repeat(MAX_ROWS));
        assert_eq!(parse_csv(csv.as_bytes(), today()).unwrap().len(), MAX_ROWS);
    }

    #[test]
    fn bad_bytes_are_a_line_error_not_a_panic() {
        let mut data = HEADER.as_bytes().to_vec();
        data.extend_from_slice(b"life,basic,\xff\xfe,40,500000,5,2010-01-01\n");
        let errors = parse_csv(&data, today()).unwrap_err();
        assert_eq!(errors[0].line, 2);
    }
}
