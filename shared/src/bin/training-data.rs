//! Writes the labelled training set for `ml-engine/train.py`.
//!
//! `training-data --rows 50000 --seed 20261127 --out ml-engine/data/train.csv`

use std::fs::File;
use std::io::BufWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut rows, mut seed, mut out) = (50_000u32, 20_261_127u64, String::from("train.csv"));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => rows = value.parse()?,
            "--seed" => seed = value.parse()?,
            "--out" => out = value,
            _ => return Err(format!("unknown flag {flag}; use --rows, --seed, --out").into()),
        }
    }
    let mut file = BufWriter::new(File::create(&out)?);
    quote_pipeline::training::write_training_set(&mut file, rows, seed)?;
    eprintln!("wrote {rows} rows to {out}");
    Ok(())
}
