//! Writes the labelled training set for `ml-engine/train.py`, or with `--evaluation` the
//! held-out evaluation set for `ml-engine/evaluate.py` (from another seed).
//!
//! `training-data --rows 30000 --spread-rows 30000 --seed 20261127 --out ml-engine/data/train.csv`
//! `training-data --evaluation --rows 10000 --spread-rows 10000 --seed 20261201 --out ml-engine/data/eval.csv`

use std::fs::File;
use std::io::BufWriter;

use quote_pipeline::training::{SetSize, write_evaluation_set, write_training_set};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size = SetSize {
        generated: 30_000,
        spread: 30_000,
    };
    let (mut seed, mut out, mut evaluation) = (20_261_127u64, String::from("train.csv"), false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--evaluation" {
            evaluation = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => size.generated = value.parse()?,
            "--spread-rows" => size.spread = value.parse()?,
            "--seed" => seed = value.parse()?,
            "--out" => out = value,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --rows, --spread-rows, --seed, --out, --evaluation"
                )
                .into());
            }
        }
    }
    let mut file = BufWriter::new(File::create(&out)?);
    if evaluation {
        write_evaluation_set(&mut file, size, seed)?;
    } else {
        write_training_set(&mut file, size, seed)?;
    }
    eprintln!(
        "wrote {} generated and {} spread rows to {out}",
        size.generated, size.spread
    );
    Ok(())
}
