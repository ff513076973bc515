//! The embedded evaluator against XGBoost itself: on the real model, every prediction, confidence
//! and end of the 10-90% range must equal, bit for bit, what the ML engine answers
//! (`ml-engine/parity.py` runs the engine's own `model_core` on the same features), exp of the
//! log-scale quantiles included.
//!
//! Needs the trained model in `ml-engine/model/` (`make test` trains it first) and the Python
//! of `.venv` (or `PYTHON`) with the engine's packages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::NaiveDate;
use quote_pipeline::features::{FEATURE_NAMES, Features, features};
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::model::{EmbeddedModel, ModelOutput};
use quote_pipeline::spread::spread;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const SEEDS: std::ops::RangeInclusive<u64> = 1..=12;
const SPREAD_ROWS: u32 = 500;
const EDGE_ROWS: usize = 3000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Features of generated quotes, 1000 a seed, and of quotes spread over the API's whole
/// domain, 500 a seed, created on dates a few years apart.
fn generated_rows() -> Vec<Features> {
    let mut rows = Vec::new();
    for seed in SEEDS {
        let created =
            NaiveDate::from_ymd_opt(2020 + (seed % 7) as i32, 1 + (seed % 12) as u32, 15).unwrap();
        let params = GenerateParams {
            seed: Some(seed),
            ..GenerateParams::new(1000)
        };
        let quotes = generate(&params)
            .into_iter()
            .chain(spread(SPREAD_ROWS, seed, created));
        rows.extend(quotes.map(|q| features(&q, created)));
    }
    rows
}

/// Rows whose features sit exactly on the model's thresholds (or one f32 step either side) or
/// are missing, so that every comparison and default direction is put to the test.
fn edge_rows(model_json: &Value, base: &[Features]) -> Vec<Features> {
    let mut thresholds = vec![Vec::new(); FEATURE_NAMES.len()];
    for tree in model_json["learner"]["gradient_booster"]["model"]["trees"]
        .as_array()
        .unwrap()
    {
        let left = tree["left_children"].as_array().unwrap();
        for (i, child) in left.iter().enumerate() {
            if child.as_i64() != Some(-1) {
                let feature = tree["split_indices"][i].as_u64().unwrap() as usize;
                thresholds[feature].push(tree["split_conditions"][i].as_f64().unwrap() as f32);
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..EDGE_ROWS)
        .map(|r| {
            let mut row = base[r % base.len()];
            for (value, candidates) in row.iter_mut().zip(&thresholds) {
                match rng.random_range(0..10) {
                    0 => *value = f64::NAN,
                    1..6 if !candidates.is_empty() => {
                        let t = candidates[rng.random_range(0..candidates.len())];
                        let t = [t.next_down(), t, t.next_up()][rng.random_range(0..3)];
                        *value = f64::from(t);
                    }
                    _ => {}
                }
            }
            row
        })
        .collect()
}

/// The bits of what the engine answers, in parity.py's order.
type Bits = [u32; 4];

fn bits_of(output: ModelOutput) -> Bits {
    [output.premium, output.confidence, output.low, output.high].map(f32::to_bits)
}

/// What parity.py (with `args`) writes for each row, as float32 bits, and the model_version.
fn engine_answers(model_dir: &Path, rows: &[Features], args: &[&str]) -> (String, Vec<Vec<u32>>) {
    let input = std::env::temp_dir().join(format!(
        "model_parity_{}_{}.csv",
        std::process::id(),
        args.len()
    ));
    let text: String = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let python =
        std::env::var_os("PYTHON").map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    let output = Command::new(&python)
        .arg(repo().join("ml-engine/parity.py"))
        .arg(model_dir)
        .arg(&input)
        .args(args)
        .current_dir(repo().join("ml-engine"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    std::fs::remove_file(&input).unwrap();
    assert!(
        output.status.success(),
        "parity.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let version = lines.next().unwrap().to_string();
    let bits = lines
        .map(|line| {
            line.split(' ')
                .map(|word| u32::from_str_radix(word, 16).unwrap())
                .collect()
        })
        .collect();
    (version, bits)
}

/// The real model, its parsed JSON, and the rows every parity test compares: generated quotes,
/// then rows on the model's thresholds (how many of each).
fn model_and_rows() -> (EmbeddedModel, std::time::Duration, Vec<Features>, usize) {
    let model_dir = repo().join("ml-engine/model");
    let model_file = model_dir.join("model.json");
    assert!(
        model_file.exists(),
        "{} is missing: train the model first (`make test` does it)",
        model_file.display()
    );
    let loading = Instant::now();
    let model = EmbeddedModel::load(&model_dir).unwrap_or_else(|e| panic!("{e}"));
    let load_time = loading.elapsed();
    let model_json: Value = serde_json::from_slice(&std::fs::read(&model_file).unwrap()).unwrap();
    let mut rows = generated_rows();
    let generated = rows.len();
    rows.extend(edge_rows(&model_json, &rows));
    (model, load_time, rows, generated)
}

/// The median and best time per call of `f` over `rows`, in batches of `batch` rows, so that
/// the median and the best batch show the cost apart from what other processes take.
fn time_per_call(rows: &[Features], batch: usize, mut f: impl FnMut(&Features)) -> (f64, f64) {
    let mut per_call: Vec<f64> = (0..20)
        .flat_map(|_| rows.chunks(batch))
        .map(|batch| {
            let started = Instant::now();
            for row in batch {
                f(std::hint::black_box(row));
            }
            started.elapsed().as_nanos() as f64 / batch.len() as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    (per_call[per_call.len() / 2], per_call[0])
}

fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[test]
fn embedded_model_answers_exactly_what_the_engine_answers() {
    let (model, load_time, rows, generated) = model_and_rows();
    let (version, expected) = engine_answers(&repo().join("ml-engine/model"), &rows, &[]);
    assert_eq!(&**model.model_version(), version);
    assert_eq!(expected.len(), rows.len());

    let mismatches: Vec<String> = rows
        .iter()
        .zip(&expected)
        .enumerate()
        .filter_map(|(i, (row, engine))| {
            let embedded = model.predict(row);
            (bits_of(embedded)[..] != engine[..]).then(|| {
                format!(
                    "row {i} {row:?}: embedded {embedded:?}, engine (premium, confidence, low, \
                     high) {:?}",
                    engine
                        .iter()
                        .map(|&b| f32::from_bits(b))
                        .collect::<Vec<_>>()
                )
            })
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ ({generated} generated or spread, {EDGE_ROWS} on thresholds), first: {:#?}",
        mismatches.len(),
        rows.len(),
        &mismatches[..mismatches.len().min(5)]
    );

    let (median, best) = time_per_call(&rows[..generated], 250, |row| {
        std::hint::black_box(model.predict(row));
    });
    eprintln!(
        "{} rows bit-identical; loaded in {load_time:?}; a prediction takes {median:.0} ns \
         (median), {best:.0} ns (best batch), {} build",
        rows.len(),
        build()
    );
}

/// Each feature's contribution and the bias of every row, to the bit, as XGBoost's
/// `pred_contribs` for the median (parity.py --explain); and they add up to the median output
/// the evaluator computes.
#[test]
fn embedded_explanations_are_xgboosts_contributions_and_add_up_to_the_median() {
    let (model, _, rows, generated) = model_and_rows();
    let (version, expected) =
        engine_answers(&repo().join("ml-engine/model"), &rows, &["--explain"]);
    assert_eq!(&**model.model_version(), version);
    assert_eq!(expected.len(), rows.len());

    let mut mismatches = Vec::new();
    let mut worst_sum = (0.0, 0);
    for (i, (row, engine)) in rows.iter().zip(&expected).enumerate() {
        let explanation = model.explain(row);
        let mut embedded: Vec<f32> = explanation.contributions.to_vec();
        embedded.push(explanation.base);
        let bits: Vec<u32> = embedded.iter().map(|c| c.to_bits()).collect();
        if bits != *engine {
            mismatches.push(format!(
                "row {i} {row:?}: embedded {embedded:?}, XGBoost {:?}",
                engine
                    .iter()
                    .map(|&b| f32::from_bits(b))
                    .collect::<Vec<_>>()
            ));
        }
        // Additivity: float32 sums differ from the walk's sum only by rounding, so the gap is
        // measured against the size of the terms.
        let terms: Vec<f64> = embedded.iter().map(|&c| f64::from(c)).collect();
        let sum: f64 = terms.iter().sum();
        let scale: f64 = terms.iter().map(|t| t.abs()).sum();
        let gap = (sum - f64::from(model.median_margin(row))).abs() / scale.max(1.0);
        if gap > worst_sum.0 {
            worst_sum = (gap, i);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ ({generated} generated, {EDGE_ROWS} on thresholds), first: {:#?}",
        mismatches.len(),
        rows.len(),
        &mismatches[..mismatches.len().min(3)]
    );
    assert!(
        worst_sum.0 < 1e-5,
        "row {}: base + contributions is off the median output by {:e} of the terms' size",
        worst_sum.1,
        worst_sum.0
    );

    // A sample: twenty passes over every row take minutes in a debug build.
    let (median, best) = time_per_call(&rows[..generated.min(500)], 50, |row| {
        std::hint::black_box(model.explain(row));
    });
    eprintln!(
        "{} rows' contributions bit-identical to XGBoost's, each adding up to the median output \
         within {:.1e} of its terms; an explanation takes {:.1} µs (median), {:.1} µs (best \
         batch), {} build",
        rows.len(),
        worst_sum.0,
        median / 1000.0,
        best / 1000.0,
        build()
    );
}
