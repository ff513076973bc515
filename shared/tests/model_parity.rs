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

/// The engine's outputs' bits for each row, and its model_version.
fn engine_answers(model_dir: &Path, rows: &[Features]) -> (String, Vec<Bits>) {
    let input = std::env::temp_dir().join(format!("model_parity_{}.csv", std::process::id()));
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
            let words: Vec<u32> = line
                .split(' ')
                .map(|word| u32::from_str_radix(word, 16).unwrap())
                .collect();
            Bits::try_from(words).unwrap_or_else(|w| panic!("parity.py wrote {w:?}"))
        })
        .collect();
    (version, bits)
}

#[test]
fn embedded_model_answers_exactly_what_the_engine_answers() {
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
    let (version, expected) = engine_answers(&model_dir, &rows);
    assert_eq!(&**model.model_version(), version);
    assert_eq!(expected.len(), rows.len());

    let mismatches: Vec<String> = rows
        .iter()
        .zip(&expected)
        .enumerate()
        .filter_map(|(i, (row, &engine))| {
            let embedded = model.predict(row);
            (bits_of(embedded) != engine).then(|| {
                format!(
                    "row {i} {row:?}: embedded {embedded:?}, engine (premium, confidence, low, \
                     high) {:?}",
                    engine.map(f32::from_bits)
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

    // Timed in batches of 250, so that the median and the best batch show the cost apart from
    // what other processes on the machine take.
    let mut per_prediction: Vec<f64> = (0..20)
        .flat_map(|_| rows[..generated].chunks(250))
        .map(|batch| {
            let started = Instant::now();
            for row in batch {
                std::hint::black_box(model.predict(std::hint::black_box(row)));
            }
            started.elapsed().as_nanos() as f64 / batch.len() as f64
        })
        .collect();
    per_prediction.sort_by(f64::total_cmp);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "{} rows bit-identical; loaded in {load_time:?}; a prediction takes {:.0} ns (median), \
         {:.0} ns (best batch), {build} build",
        rows.len(),
        per_prediction[per_prediction.len() / 2],
        per_prediction[0],
    );
}
