//! The ML engine's XGBoost model, evaluated in process and bit-identical to the engine.
//!
//! [`EmbeddedModel`] reads the engine's own files (`model.json` in XGBoost's JSON format and
//! `metadata.json`) and answers, to the last bit, what `POST /predict/batch` answers for the same
//! features. What XGBoost 3.2's CPU predictor does for one row, checked against
//! `Booster.inplace_predict` by `tests/model_parity.rs`:
//!
//! - features are rounded once from f64 to f32, thresholds and leaf values are f32;
//! - a node goes left when `value < threshold`, a missing value (NaN) to its default child;
//! - each output starts at its base margin (`base_score` through the objective's inverse link,
//!   the identity for the objectives accepted here), then every tree adds its leaf value to
//!   its `tree_info` output in f32, one tree at a time in file order.
//!
//! Adding the base score last, or summing in f64, changes the last bits of most outputs.
//!
//! The crate `hessboost` (0.4) was not used: it is a whole training library (about 100k lines,
//! with rayon and zstd) that converts XGBoost models into its own representation written for
//! XGBoost's 3.4 schema, so its bit parity with the engine's 3.2 would still have to be proven
//! here, for what takes a few hundred lines.
//!
//! In four parts: this module loads and evaluates; `xgboost_json` reads XGBoost's JSON and
//! flattens its trees, refusing what it cannot follow exactly; `compiled` writes and reads the
//! flat form that a cold start loads; `explain` takes a median premium apart into each
//! feature's contribution (XGBoost's `pred_contribs`).

mod compiled;
mod explain;
mod xgboost_json;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use quote_domain::features::{FEATURE_NAMES, Features};
use quote_domain::pricing::{Predicted, Prediction, Predictor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use compiled::COMPILED_FILE;
use compiled::parse_compiled;
use explain::node_means;
pub use explain::{Explanation, Target};
use xgboost_json::{XgbModel, flatten};

/// The engine's post-processing reads three quantiles: 10%, 50% and 90%.
const OUTPUTS: usize = 3;
/// Deeper trees than any this pipeline trains mean a damaged file.
const MAX_DEPTH: u32 = 64;
/// Trees walked side by side: their walks are independent, so their memory loads overlap.
const LANES: usize = 16;

/// Why a model cannot be loaded: the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} is not the expected JSON: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("{file}: {problem}")]
    Invalid { file: &'static str, problem: String },
}

/// The model, loaded once: every tree's nodes in one flat array, walked without allocating.
#[derive(Debug)]
pub struct EmbeddedModel {
    // Shared by every prediction rather than copied into each.
    version: Arc<str>,
    base_margin: [f32; OUTPUTS],
    /// Steps from a root to the deepest leaf of any tree: every walk takes that many.
    depth: u32,
    trees: Vec<Tree>,
    nodes: Vec<Node>,
    /// Each node's cover (XGBoost's `sum_hessian`) and expected value, beside `nodes` rather
    /// than in them: only explanations read them, and predictions walk smaller nodes.
    covers: Vec<f32>,
    means: Vec<f32>,
    /// What the outputs measure, from `metadata.json`.
    target: Target,
}

#[derive(Debug, Clone, Copy)]
struct Tree {
    root: u32,
    output: usize,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The threshold, or a leaf's value: XGBoost's JSON keeps both in `split_conditions`.
    value: f32,
    /// Left and right, as indices in `EmbeddedModel::nodes`; a leaf leads to itself.
    children: [u32; 2],
    feature: u16,
    default_left: bool,
}

impl EmbeddedModel {
    /// Reads the model in `model_dir`: `model.bin` if it is there, else `model.json`; either
    /// must be the model `metadata.json` names.
    pub fn load(model_dir: &Path) -> Result<EmbeddedModel, ModelError> {
        let read = |name: &str| {
            let path = model_dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Read { path, source })
        };
        let metadata = read("metadata.json")?;
        match std::fs::read(model_dir.join(COMPILED_FILE)) {
            Ok(compiled) => Self::from_compiled(&compiled, &metadata),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::from_json(&read("model.json")?, &metadata)
            }
            Err(source) => Err(ModelError::Read {
                path: model_dir.join(COMPILED_FILE),
                source,
            }),
        }
    }

    /// Reads `model.json` alone, ignoring any compiled file: what `model-compile` compiles.
    pub fn load_json(model_dir: &Path) -> Result<EmbeddedModel, ModelError> {
        let read = |name: &str| {
            let path = model_dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Read { path, source })
        };
        Self::from_json(&read("model.json")?, &read("metadata.json")?)
    }

    /// The compiled form of this model (little-endian): magic, version, base margin, depth,
    /// trees as (root, output), nodes as (value, left, right, feature, default_left), covers.
    fn from_compiled(compiled: &[u8], metadata_json: &[u8]) -> Result<EmbeddedModel, ModelError> {
        let metadata = read_metadata(metadata_json)?;
        let mut model = parse_compiled(compiled).map_err(|problem| ModelError::Invalid {
            file: COMPILED_FILE,
            problem,
        })?;
        model.target = Target::LnPremium;
        if *model.version != *metadata.model_version {
            return Err(ModelError::Invalid {
                file: COMPILED_FILE,
                problem: format!(
                    "compiled from model {:?}, but metadata.json names {:?}: run model-compile again",
                    model.version, metadata.model_version
                ),
            });
        }
        Ok(model)
    }

    fn from_json(model_json: &[u8], metadata_json: &[u8]) -> Result<EmbeddedModel, ModelError> {
        let metadata = read_metadata(metadata_json)?;
        let invalid_metadata = |problem: String| ModelError::Invalid {
            file: "metadata.json",
            problem,
        };
        let expected = version_of(model_json);
        if metadata.model_version != expected {
            return Err(invalid_metadata(format!(
                "model_version {:?} does not match model.json, whose version is {expected:?}",
                metadata.model_version
            )));
        }
        let model: XgbModel =
            serde_json::from_slice(model_json).map_err(|source| ModelError::Json {
                file: "model.json",
                source,
            })?;
        let mut model = flatten(model.learner, metadata.model_version).map_err(|problem| {
            ModelError::Invalid {
                file: "model.json",
                problem,
            }
        })?;
        model.target = Target::LnPremium;
        Ok(model)
    }

    /// A model of these parts, checked by its reader, predicting the premium until
    /// `metadata.json` says otherwise.
    fn new(
        version: String,
        base_margin: [f32; OUTPUTS],
        depth: u32,
        trees: Vec<Tree>,
        nodes: Vec<Node>,
        covers: Vec<f32>,
    ) -> EmbeddedModel {
        let means = node_means(&trees, &nodes, &covers);
        EmbeddedModel {
            version: version.into(),
            base_margin,
            depth,
            trees,
            nodes,
            covers,
            means,
            target: Target::default(),
        }
    }

    pub fn model_version(&self) -> &Arc<str> {
        &self.version
    }

    /// What the engine answers for these features.
    pub fn predict(&self, features: &Features) -> ModelOutput {
        postprocess(self.margins(&features.map(|v| v as f32)))
    }

    fn margins(&self, x: &[f32; FEATURE_NAMES.len()]) -> [f32; OUTPUTS] {
        // Like XGBoost, a row without missing values skips the test for them.
        if x.iter().any(|v| v.is_nan()) {
            self.walk::<true>(x)
        } else {
            self.walk::<false>(x)
        }
    }

    fn walk<const HAS_MISSING: bool>(&self, x: &[f32; FEATURE_NAMES.len()]) -> [f32; OUTPUTS] {
        let mut sums = self.base_margin;
        for group in self.trees.chunks(LANES) {
            let mut at = [0; LANES];
            for (at, tree) in at.iter_mut().zip(group) {
                *at = tree.root;
            }
            // As many steps on every path (a leaf leads to itself): no branch to mispredict.
            for _ in 0..self.depth {
                for at in &mut at[..group.len()] {
                    let node = &self.nodes[*at as usize];
                    let v = x[usize::from(node.feature)];
                    let go_left =
                        (v < node.value) | (HAS_MISSING && v.is_nan() && node.default_left);
                    *at = node.children[usize::from(!go_left)];
                }
            }
            for (at, tree) in at.iter().zip(group) {
                sums[tree.output] += self.nodes[*at as usize].value;
            }
        }
        sums
    }
}

/// `metadata.json`, whose feature names must be the pipeline's.
fn read_metadata(metadata_json: &[u8]) -> Result<Metadata, ModelError> {
    let metadata: Metadata =
        serde_json::from_slice(metadata_json).map_err(|source| ModelError::Json {
            file: "metadata.json",
            source,
        })?;
    if metadata.target.as_deref() != Some(TARGET) {
        return Err(ModelError::Invalid {
            file: "metadata.json",
            problem: format!(
                "the model predicts {:?}, not {TARGET:?}: train it again (train.py)",
                metadata.target
            ),
        });
    }
    if metadata.feature_names != FEATURE_NAMES {
        return Err(ModelError::Invalid {
            file: "metadata.json",
            problem: format!(
                "feature_names {:?} are not the pipeline's features {FEATURE_NAMES:?}",
                metadata.feature_names
            ),
        });
    }
    Ok(metadata)
}

/// One quote's outputs, in f32 as the engine answers them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOutput {
    /// The median premium, the engine's `prediction`.
    pub premium: f32,
    pub confidence: f32,
    /// The 10th and 90th percentile premiums: `low <= premium <= high`.
    pub low: f32,
    pub high: f32,
}

/// `model_core.postprocess`, step by step in f32: the trees give quantiles of ln(premium).
fn postprocess(mut q: [f32; OUTPUTS]) -> ModelOutput {
    // Only the order of -0.0 and +0.0 can differ from np.sort, and exp makes them alike.
    q.sort_by(f32::total_cmp);
    let [q10, q50, q90] = q.map(exp_f32);
    let ratio = (q90 - q10) / np_maximum(q50, 1.0);
    ModelOutput {
        premium: q50,
        confidence: 1.0 / (1.0 + ratio),
        low: q10,
        high: q90,
    }
}

/// `model_core.exp_f32`: exp of an f32 computed in f64 from basic operations only, in the
/// engine's order, then rounded once to f32. Each operation is correctly rounded, so the bits
/// are numpy's, where `f64::exp` (the C library's) and numpy's own exp may differ in the last
/// bit. x = k ln2 + r, |r| <= ln(2) / 2; exp(r) by its series in Horner's form; then times 2^k.
fn exp_f32(x: f32) -> f32 {
    // ln 2 in two parts (fdlibm's), so that k * LN2_HI is exact.
    const LN2_HI: f64 = 0.6931471803691238;
    const LN2_LO: f64 = 1.9082149292705877e-10;
    // 1 / ln 2: the double model_core writes as 1.4426950408889634.
    const INV_LN2: f64 = std::f64::consts::LOG2_E;
    const TERMS: u32 = 13;
    // Beyond these the f32 result is inf or 0 anyway, and 2^k below stays a normal f64.
    let x = f64::from(x).clamp(-104.0, 89.0);
    let k = (x * INV_LN2).round_ties_even();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=TERMS).rev() {
        p = 1.0 + (r / f64::from(n)) * p;
    }
    // 2^k exactly, k in [-150, 129] (a NaN's k is 0, and its p NaN).
    let two_to_k = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    (p * two_to_k) as f32
}

/// `np.maximum(a, b)` for a non-NaN `b`: NaN propagates and `max(-0.0, 0.0)` is `0.0`.
fn np_maximum(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// `train.py`'s model_version: "xgb-" and the first 12 hex digits of sha256(model.json).
fn version_of(model_json: &[u8]) -> String {
    let digest = Sha256::digest(model_json);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("xgb-{hex}")
}

#[derive(Deserialize)]
struct Metadata {
    model_version: String,
    feature_names: Vec<String>,
    /// What the trees predict; absent in models trained before it was written.
    #[serde(default)]
    target: Option<String>,
}

/// What [`postprocess`] takes the trees' outputs to be (`model_core.TARGET`).
const TARGET: &str = "ln(premium)";

/// The model evaluated in process: no call can fail, so every quote is priced.
impl Predictor for EmbeddedModel {
    async fn predict(&self, quotes: &[(Uuid, Features)], _deadline: Instant) -> Predicted {
        let predictions = quotes
            .iter()
            .map(|(quote_id, features)| {
                let output = EmbeddedModel::predict(self, features);
                Prediction {
                    quote_id: *quote_id,
                    premium: output.premium.into(),
                    premium_low: output.low.into(),
                    premium_high: output.high.into(),
                    confidence: output.confidence.into(),
                    model_version: Arc::clone(self.model_version()),
                }
            })
            .collect();
        Predicted {
            predictions,
            ..Predicted::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Three outputs, base scores 10, 20, 30. Tree 0 (output 0): user_age < 40, missing
    /// left, leaves -1.5 and 2.5. Tree 1 (output 1): risk_score < 0.5, missing right, leaves 1
    /// and 3. Tree 2 (output 2): one leaf, 4. Tree 3 (output 0): coverage_level < 1 to a leaf
    /// of 0.25, else coverage_level < 2 to leaves 0.5 and 0.75.
    const TINY: &str = r#"{"version": [3, 2, 0], "learner": {
        "attributes": {},
        "feature_names": [], "feature_types": [],
        "gradient_booster": {"name": "gbtree", "model": {
            "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "4"},
            "iteration_indptr": [0, 3, 4],
            "tree_info": [0, 1, 2, 0],
            "trees": [
                {"id": 0, "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                 "split_indices": [0, 0, 0], "split_conditions": [40.0, -1.5, 2.5],
                 "default_left": [1, 0, 0], "split_type": [0, 0, 0], "sum_hessian": [10.0, 4.0, 6.0],
                 "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
                 "tree_param": {"num_deleted": "0", "num_feature": "13", "num_nodes": "3", "size_leaf_vector": "1"}},
                {"id": 1, "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                 "split_indices": [8, 0, 0], "split_conditions": [0.5, 1.0, 3.0],
                 "default_left": [0, 0, 0], "split_type": [0, 0, 0], "sum_hessian": [10.0, 7.0, 3.0],
                 "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
                 "tree_param": {"num_deleted": "0", "num_feature": "13", "num_nodes": "3", "size_leaf_vector": "1"}},
                {"id": 2, "left_children": [-1], "right_children": [-1],
                 "split_indices": [0], "split_conditions": [4.0], "default_left": [0], "split_type": [0],
                 "sum_hessian": [10.0],
                 "tree_param": {"num_deleted": "0", "num_feature": "13", "num_nodes": "1", "size_leaf_vector": "1"}},
                {"id": 3, "left_children": [1, -1, 3, -1, -1], "right_children": [2, -1, 4, -1, -1],
                 "split_indices": [12, 0, 12, 0, 0], "split_conditions": [1.0, 0.25, 2.0, 0.5, 0.75],
                 "default_left": [0, 0, 0, 0, 0], "split_type": [0, 0, 0, 0, 0],
                 "sum_hessian": [10.0, 2.0, 8.0, 5.0, 3.0],
                 "tree_param": {"num_deleted": "0", "num_feature": "13", "num_nodes": "5", "size_leaf_vector": "1"}}
            ]}},
        "learner_model_param": {"base_score": "[1E1,2E1,3E1]", "boost_from_average": "1",
            "num_class": "0", "num_feature": "13", "num_target": "3"},
        "objective": {"name": "reg:quantileerror", "quantile_loss_param": {"quantile_alpha": "[1E-1,5E-1,9E-1]"}}
    }}"#;

    fn tiny() -> Value {
        serde_json::from_str(TINY).unwrap()
    }

    /// Loads `model` with a metadata.json that matches it.
    fn load(model: &Value) -> Result<EmbeddedModel, ModelError> {
        let bytes = serde_json::to_vec(model).unwrap();
        let metadata = serde_json::json!({"model_version": version_of(&bytes), "feature_names": FEATURE_NAMES, "target": TARGET});
        EmbeddedModel::from_json(&bytes, &serde_json::to_vec(&metadata).unwrap())
    }

    /// A name, a change to a valid model, and what its error must say.
    type Case = (&'static str, fn(&mut Value), &'static str);

    fn error_of(model: &Value) -> String {
        load(model)
            .expect_err("the model must be rejected")
            .to_string()
    }

    fn features(user_age: f64, risk_score: f64) -> [f32; 13] {
        let mut x = [0.0; 13];
        (x[0], x[8]) = (user_age as f32, risk_score as f32);
        x
    }

    #[test]
    fn a_value_at_the_threshold_goes_right_and_below_it_left() {
        let model = load(&tiny()).unwrap();
        assert_eq!(
            model.margins(&features(40.0, 0.5)),
            [10.0 + 2.5 + 0.25, 23.0, 34.0]
        );
        let x = features(f64::from(40f32.next_down()), f64::from(0.5f32.next_down()));
        assert_eq!(model.margins(&x), [10.0 - 1.5 + 0.25, 21.0, 34.0]);
    }

    #[test]
    fn missing_values_follow_default_left() {
        let model = load(&tiny()).unwrap();
        assert_eq!(
            model.margins(&features(f64::NAN, f64::NAN)),
            [8.75, 23.0, 34.0]
        );
    }

    #[test]
    fn a_leaf_above_the_deepest_level_keeps_its_value() {
        let model = load(&tiny()).unwrap();
        assert_eq!(model.depth, 2);
        let mut x = features(50.0, 0.1);
        for (level, leaf) in [(0.0, 0.25), (1.0, 0.5), (2.0, 0.75)] {
            x[12] = level;
            assert_eq!(model.margins(&x)[0], 12.5 + leaf, "coverage_level {level}");
        }
    }

    #[test]
    fn base_score_as_a_string_or_an_array_gives_the_same_model() {
        let mut array = tiny();
        array["learner"]["learner_model_param"]["base_score"] =
            serde_json::json!([10.0, 20.0, 30.0]);
        let x = features(30.0, 0.1);
        assert_eq!(
            load(&array).unwrap().margins(&x),
            load(&tiny()).unwrap().margins(&x)
        );
    }

    /// Inputs and the bits `model_core.exp_f32` gives for them (ml-engine/tests/test_model_core.py
    /// holds the same list).
    const EXP_BITS: [(f32, u32); 11] = [
        (0.0, 0x3f80_0000),
        (1.0, 0x402d_f854),
        (-1.0, 0x3ebc_5ab2),
        (5.0103, 0x4315_f322),
        (7.25, 0x44b0_035b),
        (10.5, 0x470d_db81),
        (16.2, 0x4b25_9c98),
        (88.7, 0x7f7a_37fc),
        (89.0, 0x7f80_0000),
        (-103.9, 0x0000_0001),
        (-104.5, 0x0000_0000),
    ];

    #[test]
    fn exp_f32_gives_the_engines_bits_and_is_exp_to_within_an_ulp() {
        for (x, bits) in EXP_BITS {
            assert_eq!(exp_f32(x).to_bits(), bits, "exp({x})");
        }
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        let (mut exact, n) = (0, 200_000);
        for i in 0..n {
            let x = -110.0 + 205.0 * i as f32 / n as f32;
            let (ours, libm) = (exp_f32(x), f64::from(x).exp() as f32);
            let ulps = ours.to_bits().abs_diff(libm.to_bits());
            assert!(ulps <= 1, "exp({x}): {ours} against {libm}");
            exact += usize::from(ulps == 0);
        }
        assert!(
            exact > n * 999 / 1000,
            "{exact} of {n} equal to the C library's"
        );
    }

    #[test]
    fn postprocess_sorts_takes_exp_and_derives_confidence_and_range_in_f32() {
        // The trees' outputs are ln(premium); sorted first, whatever their order.
        let (q10, q50, q90) = (exp_f32(6.0), exp_f32(7.25), exp_f32(8.5));
        let ratio = (q90 - q10) / q50;
        let expected = ModelOutput {
            premium: q50,
            confidence: 1.0 / (1.0 + ratio),
            low: q10,
            high: q90,
        };
        for q in [[8.5, 7.25, 6.0], [6.0, 8.5, 7.25]] {
            assert_eq!(postprocess(q), expected);
        }
        // The engine's answer for [8.5, 7.25, 6.0], bit for bit.
        let output = postprocess([8.5, 7.25, 6.0]);
        assert_eq!(
            (output.premium, output.confidence),
            (1408.1049, 0.237_877_85)
        );
        // A premium below 1 divides by 1; an empty interval is a confidence of 1.
        let output = postprocess([-1.0, -1.0, -1.0]);
        assert_eq!((output.premium, output.confidence), (exp_f32(-1.0), 1.0));
        let (q10, q50, q90) = (exp_f32(-2.0), exp_f32(-1.0), exp_f32(0.0));
        assert_eq!(
            postprocess([0.0, -1.0, -2.0]),
            ModelOutput {
                premium: q50,
                confidence: 1.0 / (1.0 + (q90 - q10)),
                low: q10,
                high: q90,
            }
        );
    }

    #[test]
    fn predict_rounds_features_once_to_f32_and_post_processes() {
        let model = load(&tiny()).unwrap();
        assert!(model.model_version().starts_with("xgb-") && model.model_version().len() == 16);
        // Below 40 as an f64, but 40 once rounded to f32: it goes right, as in XGBoost.
        let mut f = [0.0; 13];
        f[0] = 40.0 - 1e-9;
        assert_eq!(model.predict(&f), postprocess([12.75, 21.0, 34.0]));
    }

    #[test]
    fn unsupported_models_are_rejected_by_name() {
        let cases: [Case; 8] = [
            (
                "objective",
                |m| m["learner"]["objective"]["name"] = "binary:logistic".into(),
                "objective \"binary:logistic\"",
            ),
            (
                "dart",
                |m| m["learner"]["gradient_booster"]["name"] = "dart".into(),
                "unknown variant `dart`",
            ),
            (
                "categorical",
                |m| {
                    m["learner"]["gradient_booster"]["model"]["trees"][1]["split_type"][0] =
                        1.into()
                },
                "tree 1: categorical",
            ),
            (
                "vector leaf",
                |m| {
                    m["learner"]["gradient_booster"]["model"]["trees"][0]["tree_param"]["size_leaf_vector"] =
                        "3".into()
                },
                "multi_output_tree",
            ),
            (
                "features",
                |m| m["learner"]["learner_model_param"]["num_feature"] = "12".into(),
                "num_feature is 12",
            ),
            (
                "outputs",
                |m| m["learner"]["learner_model_param"]["num_target"] = "1".into(),
                "1 outputs",
            ),
            (
                "base_score",
                |m| m["learner"]["learner_model_param"]["base_score"] = "[1E1,2E1]".into(),
                "base_score has 2 values",
            ),
            (
                "tree_info",
                |m| m["learner"]["gradient_booster"]["model"]["tree_info"][3] = 3.into(),
                "tree_info[3] is 3",
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut model = tiny();
            mutate(&mut model);
            let error = error_of(&model);
            assert!(error.contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn malformed_trees_are_rejected_by_name() {
        let cases: [Case; 7] = [
            (
                "threshold out of f32 range",
                |m| m["split_conditions"][0] = 1e39.into(),
                "tree 0: node 0: split_conditions value 1e39 is not a finite f32",
            ),
            (
                "child out of range",
                |m| m["right_children"][0] = 7.into(),
                "tree 0: node 0: child 7",
            ),
            (
                "child before parent",
                |m| m["left_children"][0] = 0.into(),
                "child 0",
            ),
            (
                "split on no feature",
                |m| m["split_indices"][0] = 13.into(),
                "split index 13",
            ),
            (
                "short array",
                |m| m["default_left"] = serde_json::json!([1, 0]),
                "num_nodes is 3",
            ),
            ("id", |m| m["id"] = 2.into(), "tree 0 has id 2"),
            (
                "no cover at a split",
                |m| m["sum_hessian"][0] = 0.into(),
                "node 0: sum_hessian 0.0 is not a cover",
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut model = tiny();
            mutate(&mut model["learner"]["gradient_booster"]["model"]["trees"][0]);
            let error = error_of(&model);
            assert!(error.contains(expected), "{name}: {error}");
        }
        // JSON has no NaN: XGBoost's `NaN` is not JSON, which is an error too.
        let nan = TINY.replace("[40.0, -1.5, 2.5]", "[NaN, -1.5, 2.5]");
        let metadata = serde_json::json!({"model_version": version_of(nan.as_bytes()), "feature_names": FEATURE_NAMES, "target": TARGET});
        let error =
            EmbeddedModel::from_json(nan.as_bytes(), &serde_json::to_vec(&metadata).unwrap());
        assert!(matches!(
            error,
            Err(ModelError::Json {
                file: "model.json",
                ..
            })
        ));
    }

    #[test]
    fn metadata_must_match_the_model_and_the_pipeline() {
        let bytes = serde_json::to_vec(&tiny()).unwrap();
        let wrong_version = serde_json::json!({"model_version": "xgb-000000000000", "feature_names": FEATURE_NAMES, "target": TARGET});
        let error = EmbeddedModel::from_json(&bytes, &serde_json::to_vec(&wrong_version).unwrap())
            .unwrap_err();
        assert!(
            error.to_string().contains("does not match model.json"),
            "{error}"
        );

        let mut names = FEATURE_NAMES.map(String::from).to_vec();
        names.swap(0, 1);
        let swapped = serde_json::json!({"model_version": version_of(&bytes), "feature_names": names, "target": TARGET});
        let error =
            EmbeddedModel::from_json(&bytes, &serde_json::to_vec(&swapped).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("are not the pipeline's features"),
            "{error}"
        );

        let untransformed = serde_json::json!({"model_version": version_of(&bytes), "feature_names": FEATURE_NAMES});
        let error = EmbeddedModel::from_json(&bytes, &serde_json::to_vec(&untransformed).unwrap())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the model predicts None, not \"ln(premium)\""),
            "{error}"
        );

        let missing = EmbeddedModel::load(Path::new("/nonexistent/model")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read /nonexistent/model/metadata.json"),
            "{missing}"
        );
    }

    #[test]
    fn a_single_split_contributes_its_leaf_less_the_trees_expected_value() {
        let model = load(&tiny()).unwrap();
        // The median's one tree (tree 1) expects (1 * 7 + 3 * 3) / 10 = 1.6 of its covers.
        let mut f = [0.0; 13];
        for (risk, leaf) in [(0.1, 1.0), (0.9, 3.0), (f64::NAN, 3.0)] {
            f[8] = risk;
            let explanation = model.explain(&f);
            assert_eq!(explanation.units, Target::LnPremium);
            assert_eq!(explanation.base, 20.0 + 1.6);
            for (i, c) in explanation.contributions.into_iter().enumerate() {
                let expected = if i == 8 { leaf - 1.6 } else { 0.0 };
                assert!((c - expected).abs() < 1e-6, "risk {risk}, feature {i}: {c}");
            }
            let sum = explanation.base + explanation.contributions.iter().sum::<f32>();
            assert!((sum - model.median_margin(&f)).abs() < 1e-5, "risk {risk}");
        }
    }

    #[test]
    fn the_units_are_the_target_metadata_names() {
        let bytes = serde_json::to_vec(&tiny()).unwrap();
        let metadata = |target: Value| {
            let mut m = serde_json::json!({"model_version": version_of(&bytes), "feature_names": FEATURE_NAMES});
            if !target.is_null() {
                m["target"] = target;
            }
            serde_json::to_vec(&m).unwrap()
        };
        let units = |target: Value| {
            EmbeddedModel::from_json(&bytes, &metadata(target)).map(|m| m.explain(&[0.0; 13]).units)
        };
        assert_eq!(units("ln(premium)".into()).unwrap(), Target::LnPremium);
        for other in [Value::Null, "premium".into(), "log10(premium)".into()] {
            let error = units(other.clone()).unwrap_err().to_string();
            assert!(error.contains("train it again"), "{other}: {error}");
        }
    }

    #[test]
    fn a_compiled_model_predicts_and_explains_exactly_as_its_json() {
        let json = load(&tiny()).unwrap();
        let metadata = serde_json::json!({"model_version": json.version, "feature_names": FEATURE_NAMES, "target": TARGET});
        let metadata = serde_json::to_vec(&metadata).unwrap();
        let compiled = EmbeddedModel::from_compiled(&json.to_compiled(), &metadata).unwrap();
        for age in [0.0, 39.0, 40.0, 41.0, f64::NAN] {
            for risk in [0.0, 0.5, 0.7, f64::NAN] {
                let x = features(age, risk);
                assert_eq!(
                    compiled.margins(&x).map(f32::to_bits),
                    json.margins(&x).map(f32::to_bits)
                );
                let f = x.map(f64::from);
                assert_eq!(compiled.explain(&f), json.explain(&f));
            }
        }
        assert_eq!(compiled.model_version(), json.model_version());
    }

    #[test]
    fn a_damaged_or_stale_compiled_model_is_refused() {
        let json = load(&tiny()).unwrap();
        let metadata = |version: &str| {
            serde_json::to_vec(
                &serde_json::json!({"model_version": version, "feature_names": FEATURE_NAMES, "target": TARGET}),
            )
            .unwrap()
        };
        let good = json.to_compiled();
        let stale = EmbeddedModel::from_compiled(&good, &metadata("xgb-000000000000")).unwrap_err();
        assert!(
            stale.to_string().contains("run model-compile again"),
            "{stale}"
        );
        let current = metadata(&json.version);
        let mut cases: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            b"garbage".to_vec(),
        ];
        // A child pointing back at its parent's tree root would loop: refused.
        let mut looping = good.clone();
        let first_node = good.len() - 20 * json.nodes.len();
        looping[first_node + 4..first_node + 8].copy_from_slice(&0u32.to_le_bytes());
        cases.push(looping);
        // A split without cover would divide by zero in explanations: refused.
        let mut coverless = good.clone();
        let first_cover = good.len() - 4 * json.nodes.len();
        coverless[first_cover..first_cover + 4].copy_from_slice(&0f32.to_le_bytes());
        cases.push(coverless);
        // A file of the form before covers.
        let mut older = good[..first_cover].to_vec();
        older[5] = 1;
        cases.push(older);
        for (n, bytes) in cases.iter().enumerate() {
            let error = EmbeddedModel::from_compiled(bytes, &current).unwrap_err();
            assert!(
                error.to_string().starts_with("model.bin"),
                "case {n}: {error}"
            );
        }
    }
}
