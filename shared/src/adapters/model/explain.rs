//! Why a quote has its median premium: each feature's contribution to the model's median
//! output, as XGBoost's `predict(..., pred_contribs=True)` computes them.
//!
//! The path-dependent TreeSHAP of Lundberg et al., in the exact float32 steps of XGBoost 3.2's
//! `src/predictor/treeshap.cc` and its CPU predictor, so that `tests/model_parity.rs` finds the
//! same bits: each node's cover is its `sum_hessian`; a node's expected value is its children's,
//! weighted by their covers (`FillNodeMeanValues`); each tree's contributions are summed on
//! their own, then added to the quote's in tree order; the bias is the sum of the trees'
//! expected values, then the base margin.
//!
//! Only the median's trees are explained (output 1 of q10, q50, q90). The contributions are in
//! the units of that output before post-processing ([`Target`]): the base plus every
//! contribution is the median output (up to float32 rounding), and on the log scale each
//! contribution `c` multiplies the premium by `exp(c)`.

use quote_domain::features::{FEATURE_NAMES, Features};

use super::{EmbeddedModel, Node, Tree};

/// The median's output among q10, q50, q90.
const MEDIAN: usize = 1;

/// What the model's outputs measure, the units of its explanations: `metadata.json`'s
/// `target`, which loading requires to be `model_core.TARGET` (the model is trained on the
/// log scale; an enum, so that a second target is a variant away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The natural log of the premium: a contribution `c` multiplies the median premium by
    /// `exp(c)`, and the premium is `exp(base + sum of contributions)`.
    #[default]
    LnPremium,
}

impl Target {
    /// The name of the units, as `metadata.json` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Target::LnPremium => super::TARGET,
        }
    }
}

/// One quote's median output, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub units: Target,
    /// The median output of an average quote of the training set: where every explanation
    /// starts (XGBoost's bias column).
    pub base: f32,
    /// Each feature's contribution, in `FEATURE_NAMES` order.
    pub contributions: [f32; FEATURE_NAMES.len()],
}

/// One step of the path from a tree's root to a node, as TreeSHAP keeps it.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    /// The feature, or -1 for the root's placeholder.
    feature: i32,
    zero_fraction: f32,
    one_fraction: f32,
    pweight: f32,
}

impl EmbeddedModel {
    /// The median output before post-processing: what [`Self::explain`] takes apart.
    pub fn median_margin(&self, features: &Features) -> f32 {
        self.margins(&features.map(|v| v as f32))[MEDIAN]
    }

    /// Each feature's contribution to the median output for these features.
    pub fn explain(&self, features: &Features) -> Explanation {
        let x = features.map(|v| v as f32);
        // XGBoost's buffer: every level of the recursion keeps its own copy of the path.
        let levels = self.depth as usize + 2;
        let mut paths = vec![PathElement::default(); levels * (levels + 1) / 2];
        let mut total = [0f32; FEATURE_NAMES.len()];
        let mut base = 0f32;
        for tree in self.trees.iter().filter(|t| t.output == MEDIAN) {
            let mut phi = [0f32; FEATURE_NAMES.len()];
            self.tree_shap(&x, &mut phi, tree.root, 0, &mut paths, 1.0, 1.0, -1);
            for (sum, c) in total.iter_mut().zip(phi) {
                *sum += c;
            }
            base += self.means[tree.root as usize];
        }
        Explanation {
            units: self.target,
            base: base + self.base_margin[MEDIAN],
            contributions: total,
        }
    }

    /// `TreeShap` of treeshap.cc without conditioning. `paths` starts at the parent's path,
    /// whose first `unique_depth` elements are set; this node's path follows it.
    #[allow(clippy::too_many_arguments)]
    fn tree_shap(
        &self,
        x: &[f32; FEATURE_NAMES.len()],
        phi: &mut [f32; FEATURE_NAMES.len()],
        at: u32,
        mut unique_depth: usize,
        paths: &mut [PathElement],
        parent_zero_fraction: f32,
        parent_one_fraction: f32,
        parent_feature: i32,
    ) {
        let (parent, rest) = paths.split_at_mut(unique_depth + 1);
        rest[..=unique_depth].copy_from_slice(parent);
        let path = rest;
        extend_path(
            path,
            unique_depth,
            parent_zero_fraction,
            parent_one_fraction,
            parent_feature,
        );
        let node = self.nodes[at as usize];
        if is_leaf(&node, at) {
            for i in 1..=unique_depth {
                let w = unwound_path_sum(path, unique_depth, i);
                let el = path[i];
                phi[el.feature as usize] += w * (el.one_fraction - el.zero_fraction) * node.value;
            }
            return;
        }
        let v = x[usize::from(node.feature)];
        let go_left = v < node.value || (v.is_nan() && node.default_left);
        let [hot, cold] = if go_left {
            node.children
        } else {
            [node.children[1], node.children[0]]
        };
        let w = self.covers[at as usize];
        let hot_zero_fraction = self.covers[hot as usize] / w;
        let cold_zero_fraction = self.covers[cold as usize] / w;
        let (mut incoming_zero_fraction, mut incoming_one_fraction) = (1f32, 1f32);
        // A feature split on above is unwound, so that this split redoes it.
        let feature = i32::from(node.feature);
        if let Some(index) = path[..=unique_depth]
            .iter()
            .position(|el| el.feature == feature)
        {
            incoming_zero_fraction = path[index].zero_fraction;
            incoming_one_fraction = path[index].one_fraction;
            unwind_path(path, unique_depth, index);
            unique_depth -= 1;
        }
        self.tree_shap(
            x,
            phi,
            hot,
            unique_depth + 1,
            path,
            hot_zero_fraction * incoming_zero_fraction,
            incoming_one_fraction,
            feature,
        );
        self.tree_shap(
            x,
            phi,
            cold,
            unique_depth + 1,
            path,
            cold_zero_fraction * incoming_zero_fraction,
            0.0,
            feature,
        );
    }
}

fn is_leaf(node: &Node, at: u32) -> bool {
    node.children == [at; 2]
}

/// `ExtendPath`: the path with one more split, a fraction `one_fraction` of the quote's weight
/// and `zero_fraction` of the training data's going its way.
fn extend_path(
    path: &mut [PathElement],
    unique_depth: usize,
    zero_fraction: f32,
    one_fraction: f32,
    feature: i32,
) {
    path[unique_depth] = PathElement {
        feature,
        zero_fraction,
        one_fraction,
        pweight: if unique_depth == 0 { 1.0 } else { 0.0 },
    };
    let depth = (unique_depth + 1) as f32;
    for i in (0..unique_depth).rev() {
        path[i + 1].pweight += one_fraction * path[i].pweight * (i + 1) as f32 / depth;
        path[i].pweight = zero_fraction * path[i].pweight * (unique_depth - i) as f32 / depth;
    }
}

/// `UnwindPath`: the path without the split at `index`.
fn unwind_path(path: &mut [PathElement], unique_depth: usize, index: usize) {
    let PathElement {
        one_fraction,
        zero_fraction,
        ..
    } = path[index];
    let depth = (unique_depth + 1) as f32;
    let mut next_one_portion = path[unique_depth].pweight;
    for i in (0..unique_depth).rev() {
        if one_fraction != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one_portion * depth / ((i + 1) as f32 * one_fraction);
            next_one_portion =
                tmp - path[i].pweight * zero_fraction * (unique_depth - i) as f32 / depth;
        } else {
            path[i].pweight =
                (path[i].pweight * depth) / (zero_fraction * (unique_depth - i) as f32);
        }
    }
    for i in index..unique_depth {
        path[i] = PathElement {
            pweight: path[i].pweight,
            ..path[i + 1]
        };
    }
}

/// `UnwoundPathSum`: the path's total weight were the split at `index` unwound.
fn unwound_path_sum(path: &[PathElement], unique_depth: usize, index: usize) -> f32 {
    let PathElement {
        one_fraction,
        zero_fraction,
        ..
    } = path[index];
    let depth = (unique_depth + 1) as f32;
    let mut next_one_portion = path[unique_depth].pweight;
    let mut total = 0f32;
    for i in (0..unique_depth).rev() {
        if one_fraction != 0.0 {
            let tmp = next_one_portion * depth / ((i + 1) as f32 * one_fraction);
            total += tmp;
            next_one_portion =
                path[i].pweight - tmp * zero_fraction * ((unique_depth - i) as f32 / depth);
        } else if zero_fraction != 0.0 {
            total += (path[i].pweight / zero_fraction) / ((unique_depth - i) as f32 / depth);
        }
    }
    total
}

/// Each node's expected value over the training data, as `FillNodeMeanValues` computes it in
/// float32: a leaf's value, or its children's weighted by their covers.
pub(super) fn node_means(trees: &[Tree], nodes: &[Node], covers: &[f32]) -> Vec<f32> {
    fn fill(at: u32, nodes: &[Node], covers: &[f32], means: &mut [f32]) -> f32 {
        let node = &nodes[at as usize];
        let mean = if is_leaf(node, at) {
            node.value
        } else {
            let [left, right] = node.children;
            let mut mean = fill(left, nodes, covers, means) * covers[left as usize];
            mean += fill(right, nodes, covers, means) * covers[right as usize];
            mean / covers[at as usize]
        };
        means[at as usize] = mean;
        mean
    }
    let mut means = vec![0f32; nodes.len()];
    for tree in trees {
        fill(tree.root, nodes, covers, &mut means);
    }
    means
}
