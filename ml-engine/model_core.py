"""Load the trained premium model and turn its quantiles into a premium, its range and a confidence.

The booster predicts the 10th, 50th and 90th percentiles of ln(premium) (3 outputs): it is
trained on the log scale, where the premium's factors add up, and quantiles survive the
monotone exp. Post-processing (a Rust evaluator replicates it bit for bit):

    l10, l50, l90 = sorted(row)            # float32; sorting fixes quantile crossing
    q10, q50, q90 = exp_f32(l10), ...      # the premiums, float32, always >= 0
    prediction    = q50                    # the 10-90% range is q10..q90, holding it
    width         = q90 - q10              # float32 subtraction
    denom         = max(q50, 1.0)          # float32
    ratio         = width / denom          # float32 division
    confidence    = 1.0 / (1.0 + ratio)    # float32 addition, then float32 division

`exp_f32` is computed in float64 from +, -, *, / and a power of two only (see its docstring),
so that it gives the same bits here and in Rust: numpy's exp and Rust's may differ in the last
bit. confidence is in (0, 1]: 1 when the 80% interval is empty, lower as the interval widens
relative to the premium. Inputs are float32 rows in `feature_names` order.
"""
import json
from pathlib import Path

import numpy as np
import xgboost as xgb

QUANTILES = [0.1, 0.5, 0.9]
# What the booster's outputs are: the engine and the in-process model refuse any other.
TARGET = "ln(premium)"
MEDIAN = QUANTILES.index(0.5)
CONFIDENCE_FORMULA = (
    "float32: q10,q50,q90 = exp_f32(sort(row)); prediction = q50; width = q90 - q10; "
    "denom = max(q50, 1); ratio = width / denom; confidence = 1 / (1 + ratio)"
)

_ONE = np.float32(1.0)


# ln 2 split in two (fdlibm's), so that k * LN2_HI is exact for the k met here.
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634
# Terms of the series for exp(r), |r| <= ln(2) / 2: the first one left out is below 1e-17.
_TERMS = 13
# Beyond these, exp of a float32 is inf or rounds to 0 in float32 (and 2^k stays normal).
_X_MIN, _X_MAX = -104.0, 89.0


def exp_f32(x: np.ndarray) -> np.ndarray:
    """exp of float32 values as float32: computed in float64, then rounded once.

    x = k ln2 + r with k whole and |r| <= ln(2) / 2, exp(r) by the series 1 + r(1 + r/2(1 +
    r/3(...))) in Horner's form, then times 2^k: only IEEE basic operations, each correctly
    rounded, in a fixed order, so any implementation that follows these steps (the Rust
    evaluator's `exp_f32`) gives the same bits, where library exp functions may differ in the
    last one. Relative error well below float32's half ulp before the final rounding."""
    x = np.clip(np.asarray(x, dtype=np.float64), _X_MIN, _X_MAX)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = np.ones_like(r)
    for n in range(_TERMS, 0, -1):
        p = 1.0 + (r / float(n)) * p
    # NaN's k is garbage, and its p NaN anyway; beyond float32's range is inf, as exp says.
    with np.errstate(invalid="ignore", over="ignore"):
        return np.ldexp(p, k.astype(np.int32)).astype(np.float32)


def postprocess(quantiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """(n, 3) float32 quantiles of ln(premium) -> (prediction, confidence, low, high), float32
    of shape (n,)."""
    q = exp_f32(np.sort(quantiles, axis=1))
    q10, q50, q90 = q[:, 0], q[:, 1], q[:, 2]
    ratio = (q90 - q10) / np.maximum(q50, _ONE)
    return q50, _ONE / (_ONE + ratio), q10, q90


class Model:
    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        self.metadata = json.loads((model_dir / "metadata.json").read_text())
        self.version: str = self.metadata["model_version"]
        self.feature_names: list[str] = self.metadata["feature_names"]
        if self.metadata.get("target") != TARGET:
            raise ValueError(f"{model_dir}: the model predicts {self.metadata.get('target')!r}, "
                             f"not {TARGET!r}: train it again (train.py)")
        # The units of explanations: what the outputs measure.
        self.target: str = TARGET
        self.booster = xgb.Booster()
        self.booster.load_model(model_dir / "model.json")

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, ...]:
        """matrix: float32 (n, n_features) in feature_names order; one vectorised call."""
        return postprocess(self.booster.inplace_predict(matrix))

    def explain(self, matrix: np.ndarray) -> np.ndarray:
        """float32 (n, n_features + 1): each feature's contribution to the median's output
        (before post-processing, in the units of metadata's `target`), then the bias; a row
        adds up to that output. XGBoost's path-dependent TreeSHAP (`pred_contribs`)."""
        data = xgb.DMatrix(matrix, feature_names=self.feature_names, missing=np.nan)
        return self.booster.predict(data, pred_contribs=True)[:, MEDIAN, :]
