//! Compiles the model in a directory (`model.json`, `metadata.json`) into `model.bin`, the form
//! `score` loads at a cold start in about a millisecond.
//!
//! `model-compile ml-engine/model`

use std::path::PathBuf;

use quote_pipeline::model::{COMPILED_FILE, EmbeddedModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: model-compile <model directory>")?,
    );
    let model = EmbeddedModel::load_json(&dir)?;
    let out = dir.join(COMPILED_FILE);
    std::fs::write(&out, model.to_compiled())?;
    eprintln!("wrote {} (model {})", out.display(), model.model_version());
    Ok(())
}
