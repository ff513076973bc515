//! The compiled model (`model-compile` writes it beside `model.json`): the flat nodes as they
//! are in memory, then their covers (which only explanations read), little-endian, so a cold start reads them in about a millisecond rather than
//! parsing 2 MB of JSON. It carries the version of the `model.json` it was compiled from, and
//! is checked as strictly as the JSON, since a damaged file must not answer wrong numbers.

use super::xgboost_json::valid_cover;
use super::{EmbeddedModel, FEATURE_NAMES, MAX_DEPTH, Node, OUTPUTS, Tree};

/// The compiled model's file name, beside `model.json`.
pub const COMPILED_FILE: &str = "model.bin";
/// Form 2 added the covers; a file of form 1 is refused by its magic (and compiled again by
/// `scripts/lib.sh`'s `ensure_model`, which reads the magic too).
const MAGIC: &[u8; 8] = b"QPXGB\x02\0\0";

impl EmbeddedModel {
    pub fn to_compiled(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.trees.len() * 8 + self.nodes.len() * 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.version.len() as u32).to_le_bytes());
        out.extend_from_slice(self.version.as_bytes());
        for m in self.base_margin {
            out.extend_from_slice(&m.to_le_bytes());
        }
        out.extend_from_slice(&self.depth.to_le_bytes());
        out.extend_from_slice(&(self.trees.len() as u32).to_le_bytes());
        for tree in &self.trees {
            out.extend_from_slice(&tree.root.to_le_bytes());
            out.extend_from_slice(&(tree.output as u32).to_le_bytes());
        }
        out.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for node in &self.nodes {
            out.extend_from_slice(&node.value.to_le_bytes());
            out.extend_from_slice(&node.children[0].to_le_bytes());
            out.extend_from_slice(&node.children[1].to_le_bytes());
            out.extend_from_slice(&node.feature.to_le_bytes());
            out.extend_from_slice(&[u8::from(node.default_left), 0]);
        }
        for cover in &self.covers {
            out.extend_from_slice(&cover.to_le_bytes());
        }
        out
    }
}

/// Reads a compiled model, checking what `flatten` checks of a JSON one: every tree's nodes
/// contiguous, children after their parent and inside their tree, every path a leaf (a node
/// leading to itself) within the depth.
pub(super) fn parse_compiled(bytes: &[u8]) -> Result<EmbeddedModel, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let part = bytes.get(at..at + n).ok_or("the file is truncated")?;
        at += n;
        Ok(part)
    };
    if take(MAGIC.len())? != MAGIC {
        return Err("not a compiled model (wrong magic bytes)".into());
    }
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("four bytes"));
    let version_len = u32_at(take(4)?) as usize;
    let version =
        String::from_utf8(take(version_len)?.to_vec()).map_err(|_| "the version is not UTF-8")?;
    let mut base_margin = [0f32; OUTPUTS];
    for m in &mut base_margin {
        *m = f32::from_le_bytes(take(4)?.try_into().expect("four bytes"));
    }
    let depth = u32_at(take(4)?);
    if depth > MAX_DEPTH || base_margin.iter().any(|m| !m.is_finite()) {
        return Err(format!(
            "depth {depth} or base margin {base_margin:?} out of range"
        ));
    }
    let tree_count = u32_at(take(4)?) as usize;
    let mut trees = Vec::with_capacity(tree_count.min(bytes.len() / 8));
    for _ in 0..tree_count {
        let root = u32_at(take(4)?);
        let output = u32_at(take(4)?) as usize;
        trees.push(Tree { root, output });
    }
    let node_count = u32_at(take(4)?) as usize;
    let mut nodes = Vec::with_capacity(node_count.min(bytes.len() / 16));
    for _ in 0..node_count {
        let b = take(16)?;
        let field = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("four bytes"));
        nodes.push(Node {
            value: f32::from_bits(field(0)),
            children: [field(4), field(8)],
            feature: u16::from_le_bytes([b[12], b[13]]),
            default_left: match b[14] {
                0 => false,
                1 => true,
                d => return Err(format!("default_left is {d}")),
            },
        });
    }
    let mut covers = Vec::with_capacity(node_count.min(bytes.len() / 4));
    for _ in 0..node_count {
        covers.push(f32::from_le_bytes(take(4)?.try_into().expect("four bytes")));
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after the last node", bytes.len() - at));
    }
    for (t, tree) in trees.iter().enumerate() {
        let start = tree.root as usize;
        let end = trees
            .get(t + 1)
            .map_or(node_count, |next| next.root as usize);
        if tree.output >= OUTPUTS || start >= end || end > node_count || (t == 0 && start != 0) {
            return Err(format!(
                "tree {t}: root {start} or output {} out of range",
                tree.output
            ));
        }
        let mut depths = vec![0u32; end - start];
        for i in start..end {
            let node = &nodes[i];
            if !node.value.is_finite() {
                return Err(format!("node {i}: value {} is not finite", node.value));
            }
            let is_leaf = node.children == [i as u32; 2];
            if !valid_cover(covers[i], !is_leaf) {
                return Err(format!("node {i}: cover {} out of range", covers[i]));
            }
            if is_leaf {
                continue;
            }
            for child in node.children {
                let child = child as usize;
                if child <= i || child >= end || usize::from(node.feature) >= FEATURE_NAMES.len() {
                    return Err(format!(
                        "node {i}: child {child} or feature {} out of range",
                        node.feature
                    ));
                }
                depths[child - start] = depths[i - start] + 1;
            }
        }
        if depths.iter().any(|&d| d > depth) {
            return Err(format!("tree {t} is deeper than the stated depth {depth}"));
        }
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
