"""Load the trained premium model and turn its quantiles into a premium, its range and a confidence.

The booster predicts the 10th, 50th and 90th percentiles of the premium (3 outputs).
Post-processing, all in float32 exactly as written (a Rust evaluator replicates it):

    q10, q50, q90 = sorted(row)            # sorting fixes quantile crossing
    prediction    = max(q50, 0.0)
    low, high     = max(q10, 0.0), max(q90, 0.0)   # the 10-90% range, low <= prediction <= high
    width         = q90 - q10              # float32 subtraction
    denom         = max(q50, 1.0)          # float32
    ratio         = width / denom          # float32 division
    confidence    = 1.0 / (1.0 + ratio)    # float32 addition, then float32 division

confidence is in (0, 1]: 1 when the 80% interval is empty, lower as the interval widens
relative to the premium. Inputs are float32 rows in `feature_names` order.
"""
import json
from pathlib import Path

import numpy as np
import xgboost as xgb

QUANTILES = [0.1, 0.5, 0.9]
MEDIAN = QUANTILES.index(0.5)
CONFIDENCE_FORMULA = (
    "float32: q10,q50,q90 = sort(row); prediction = max(q50, 0); width = q90 - q10; "
    "denom = max(q50, 1); ratio = width / denom; confidence = 1 / (1 + ratio)"
)

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


def postprocess(quantiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """(n, 3) float32 quantiles -> (prediction, confidence, low, high), float32 of shape (n,)."""
    q = np.sort(quantiles, axis=1)
    q10, q50, q90 = q[:, 0], q[:, 1], q[:, 2]
    ratio = (q90 - q10) / np.maximum(q50, _ONE)
    low, prediction, high = np.maximum(q, _ZERO).T
    return prediction, _ONE / (_ONE + ratio), low, high


class Model:
    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        self.metadata = json.loads((model_dir / "metadata.json").read_text())
        self.version: str = self.metadata["model_version"]
        self.feature_names: list[str] = self.metadata["feature_names"]
        # What the outputs measure: the premium itself unless metadata names another target.
        self.target: str = self.metadata.get("target", "premium")
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
