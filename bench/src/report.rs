//! The printed table, the budgets and the JSON document, filled in as the sections run.

use std::fmt::Write;

use serde_json::{Map, Value, json};

#[derive(Default)]
pub struct Report {
    sections: Vec<(String, Vec<(String, String)>)>,
    pub budgets: Vec<Budget>,
    pub json: Map<String, Value>,
}

pub struct Budget {
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// The figure must stay at or below the limit (else at or above it).
    pub at_most: bool,
}

impl Budget {
    pub fn pass(&self) -> bool {
        if self.at_most {
            self.measured <= self.limit
        } else {
            self.measured >= self.limit
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "measured": self.measured, "limit": self.limit, "unit": self.unit,
            "rule": if self.at_most { "at most" } else { "at least" }, "pass": self.pass(),
        })
    }
}

impl Report {
    pub fn section(&mut self, title: impl Into<String>) {
        let title = title.into();
        eprintln!("--- {title}");
        self.sections.push((title, Vec::new()));
    }

    pub fn row(&mut self, label: impl Into<String>, value: impl Into<String>) {
        let (label, value) = (label.into(), value.into());
        eprintln!("    {label}: {value}");
        self.sections
            .last_mut()
            .expect("a section first")
            .1
            .push((label, value));
    }

    pub fn budget(
        &mut self,
        name: impl Into<String>,
        measured: f64,
        limit: f64,
        unit: &'static str,
        at_most: bool,
    ) {
        self.budgets.push(Budget {
            name: name.into(),
            measured,
            limit,
            unit,
            at_most,
        });
    }

    pub fn render(&self) -> String {
        let width = self
            .sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(l, _)| l.len()))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (title, rows) in &self.sections {
            let _ = writeln!(out, "\n{title}");
            for (label, value) in rows {
                let _ = writeln!(out, "  {label:<width$}  {value}");
            }
        }
        let _ = writeln!(out, "\nBudgets (reported, never fatal)");
        let name_width = self.budgets.iter().map(|b| b.name.len()).max().unwrap_or(0);
        for b in &self.budgets {
            let _ = writeln!(
                out,
                "  {}  {:<name_width$}  {:>10} {:<5} {} {} {}",
                if b.pass() { "PASS" } else { "FAIL" },
                b.name,
                number(b.measured),
                b.unit,
                if b.at_most { "<=" } else { ">=" },
                number(b.limit),
                b.unit,
            );
        }
        out
    }
}

pub fn number(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// p50 / p95 / p99 of `samples`, for a table cell.
pub fn spread(samples: &[f64]) -> String {
    use crate::stats::percentile;
    format!(
        "p50 {} ms  p95 {} ms  p99 {} ms",
        number(percentile(samples, 50.0)),
        number(percentile(samples, 95.0)),
        number(percentile(samples, 99.0))
    )
}
