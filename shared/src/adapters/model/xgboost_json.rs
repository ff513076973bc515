//! XGBoost's JSON model format, as far as prediction needs it, and its flattening into the
//! evaluator's nodes.

use serde::Deserialize;
use serde_json::Value;

use super::{EmbeddedModel, FEATURE_NAMES, Node, OUTPUTS, Tree};

const SUPPORTED_OBJECTIVES: [&str; 2] = ["reg:quantileerror", "reg:squarederror"];

#[derive(Deserialize)]
pub(super) struct XgbModel {
    pub(super) learner: Learner,
}

#[derive(Deserialize)]
pub(super) struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: GradientBooster,
    learner_model_param: LearnerModelParam,
    objective: Objective,
}

/// Tagged so that `dart` or `gblinear` fail by name, before their other fields are read.
#[derive(Deserialize)]
#[serde(tag = "name")]
enum GradientBooster {
    #[serde(rename = "gbtree")]
    GbTree { model: GbTreeModel },
}

#[derive(Deserialize)]
struct GbTreeModel {
    trees: Vec<XgbTree>,
    tree_info: Vec<usize>,
}

/// XGBoost writes these parameters as strings.
#[derive(Deserialize)]
pub(super) struct LearnerModelParam {
    base_score: Value,
    num_class: String,
    num_feature: String,
    num_target: String,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct XgbTree {
    id: usize,
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<u64>,
    split_conditions: Vec<f64>,
    default_left: Vec<u8>,
    split_type: Vec<u8>,
    /// Each node's cover: only explanations read it.
    sum_hessian: Vec<f64>,
    #[serde(default)]
    categories_nodes: Vec<i64>,
    tree_param: TreeParam,
}

#[derive(Deserialize)]
struct TreeParam {
    num_nodes: String,
    size_leaf_vector: String,
}

/// Checks everything prediction relies on, so that a model it cannot follow exactly fails
/// here, by name, rather than answering a wrong number later.
pub(super) fn flatten(learner: Learner, version: String) -> Result<EmbeddedModel, String> {
    let objective = learner.objective.name;
    if !SUPPORTED_OBJECTIVES.contains(&objective.as_str()) {
        return Err(format!(
            "objective {objective:?} is not supported; only {SUPPORTED_OBJECTIVES:?}"
        ));
    }
    let param = learner.learner_model_param;
    let count = |name: &str, text: &str| {
        text.parse::<usize>()
            .map_err(|_| format!("{name} {text:?} is not a whole number"))
    };
    if count("num_class", &param.num_class)? > 1 {
        return Err(format!(
            "num_class is {}: multi-class models are not supported",
            param.num_class
        ));
    }
    let outputs = count("num_target", &param.num_target)?;
    if outputs != OUTPUTS {
        return Err(format!(
            "the model has {outputs} outputs; the engine's post-processing needs {OUTPUTS} (q10, q50, q90)"
        ));
    }
    let num_feature = count("num_feature", &param.num_feature)?;
    if num_feature != FEATURE_NAMES.len() {
        return Err(format!(
            "num_feature is {num_feature} but metadata.json names {} features",
            FEATURE_NAMES.len()
        ));
    }
    if !learner.feature_names.is_empty() && learner.feature_names != FEATURE_NAMES {
        return Err(format!(
            "feature_names {:?} differ from metadata.json's",
            learner.feature_names
        ));
    }
    // The inverse link of both objectives is the identity: base_score is the base margin.
    let base_margin: [f32; OUTPUTS] =
        base_score(&param.base_score)?
            .try_into()
            .map_err(|v: Vec<f32>| {
                format!("base_score has {} values for {OUTPUTS} outputs", v.len())
            })?;

    let GradientBooster::GbTree { model } = learner.gradient_booster;
    if model.tree_info.len() != model.trees.len() {
        return Err(format!(
            "tree_info has {} entries for {} trees",
            model.tree_info.len(),
            model.trees.len()
        ));
    }
    let mut trees = Vec::with_capacity(model.trees.len());
    let mut nodes = Vec::new();
    let mut covers = Vec::new();
    let mut depth = 0;
    for (t, (tree, &output)) in model.trees.iter().zip(&model.tree_info).enumerate() {
        // XGBoost places each tree by its id, and adds them up in that order.
        if tree.id != t {
            return Err(format!("tree {t} has id {}", tree.id));
        }
        if output >= OUTPUTS {
            return Err(format!(
                "tree_info[{t}] is {output}, not an output below {OUTPUTS}"
            ));
        }
        let root = u32::try_from(nodes.len()).map_err(|_| "too many nodes".to_string())?;
        let tree_depth = flatten_tree(tree, root, &mut nodes, &mut covers)
            .map_err(|problem| format!("tree {t}: {problem}"))?;
        depth = depth.max(tree_depth);
        trees.push(Tree { root, output });
    }
    Ok(EmbeddedModel::new(
        version,
        base_margin,
        depth,
        trees,
        nodes,
        covers,
    ))
}

/// Appends the tree's nodes and their covers, its root at `root`, and answers its depth.
fn flatten_tree(
    tree: &XgbTree,
    root: u32,
    nodes: &mut Vec<Node>,
    covers: &mut Vec<f32>,
) -> Result<u32, String> {
    // "0" is how XGBoost before 2.0 wrote a scalar leaf.
    if !matches!(tree.tree_param.size_leaf_vector.as_str(), "0" | "1") {
        return Err(format!(
            "size_leaf_vector is {}: vector leaves (multi_strategy multi_output_tree) are not supported",
            tree.tree_param.size_leaf_vector
        ));
    }
    if !tree.categories_nodes.is_empty() || tree.split_type.iter().any(|&t| t != 0) {
        return Err("categorical splits are not supported".into());
    }
    let n: usize = tree
        .tree_param
        .num_nodes
        .parse()
        .map_err(|_| "num_nodes is not a whole number")?;
    let lengths = [
        tree.left_children.len(),
        tree.right_children.len(),
        tree.split_indices.len(),
        tree.split_conditions.len(),
        tree.default_left.len(),
        tree.split_type.len(),
        tree.sum_hessian.len(),
    ];
    if n == 0 || lengths.iter().any(|&len| len != n) {
        return Err(format!(
            "num_nodes is {n} but the node arrays have lengths {lengths:?}"
        ));
    }
    let mut depth = vec![0; n];
    for i in 0..n {
        // XGBoost writes an f32 as its shortest decimal, whose nearest f64 rounds back to it.
        let value = tree.split_conditions[i] as f32;
        if !value.is_finite() {
            return Err(format!(
                "node {i}: split_conditions value {:?} is not a finite f32",
                tree.split_conditions[i]
            ));
        }
        let cover = tree.sum_hessian[i] as f32;
        let is_split = tree.left_children[i] != -1;
        if !valid_cover(cover, is_split) {
            return Err(format!(
                "node {i}: sum_hessian {:?} is not a cover (finite, above 0 at a split)",
                tree.sum_hessian[i]
            ));
        }
        covers.push(cover);
        let node = match (tree.left_children[i], tree.right_children[i]) {
            (-1, -1) => Node {
                value,
                children: [root + i as u32; 2],
                feature: 0,
                default_left: false,
            },
            (left, right) => {
                // Children after their parent also rule out cycles.
                let child = |c: i64| match usize::try_from(c) {
                    Ok(c) if c > i && c < n => Ok(root + c as u32),
                    _ => Err(format!(
                        "node {i}: child {c} is not a node after it (of {n})"
                    )),
                };
                let feature = match u16::try_from(tree.split_indices[i]) {
                    Ok(f) if usize::from(f) < FEATURE_NAMES.len() => f,
                    _ => {
                        return Err(format!(
                            "node {i}: split index {} is not a feature",
                            tree.split_indices[i]
                        ));
                    }
                };
                let default_left = match tree.default_left[i] {
                    0 => false,
                    1 => true,
                    d => return Err(format!("node {i}: default_left is {d}")),
                };
                let children = [child(left)?, child(right)?];
                for c in [left, right] {
                    depth[c as usize] = depth[i] + 1;
                }
                Node {
                    value,
                    children,
                    feature,
                    default_left,
                }
            }
        };
        nodes.push(node);
    }
    Ok(depth.into_iter().max().unwrap_or(0))
}

/// A node's cover divides its children's in explanations: it must be finite, at least 0, and
/// above 0 at a split (XGBoost splits no node without data).
pub(super) fn valid_cover(cover: f32, is_split: bool) -> bool {
    cover.is_finite() && (cover > 0.0 || (!is_split && cover == 0.0))
}

/// `base_score`: a string such as "[1.2E3,1.5E3,1.9E3]" (XGBoost 3) or an array of numbers.
pub(super) fn base_score(value: &Value) -> Result<Vec<f32>, String> {
    let scores: Vec<f32> = match value {
        Value::String(text) => text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("base_score {text:?} is not a list of numbers"))
            })
            .collect::<Result<_, _>>()?,
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or(format!("base_score {value} is not a list of numbers"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(format!(
                "base_score {value} is neither a string nor an array"
            ));
        }
    };
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(format!("base_score {value} is not finite"));
    }
    Ok(scores)
}
