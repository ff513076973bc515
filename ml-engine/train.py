"""Train the premium model: one XGBoost booster predicting the 10/50/90% quantiles.

    python train.py --data data/train.csv --out-dir model

CSV: header row; `premium` is the label, `quote_id` (if present) is ignored and every
other column is a numeric feature, in header order. The booster learns ln(premium): the
premium is a product of factors, which the log turns into a sum that trees fit far better,
and the quantiles of ln(premium) are the logs of the premium's (model_core.postprocess takes
exp). Writes model.json (XGBoost's own format) and metadata.json. Same CSV -> same bytes:
fixed seed, deterministic split, and no timestamps in the outputs.
"""
import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from model_core import CONFIDENCE_FORMULA, QUANTILES, TARGET, exp_f32, postprocess

HERE = Path(__file__).resolve().parent
LABEL, IGNORED = "premium", {"quote_id"}
SEED = 42
HOLDOUT_SHARE = 0.2
NUM_ROUNDS = 300
PARAMS = {
    "objective": "reg:quantileerror",
    "quantile_alpha": QUANTILES,
    "tree_method": "hist",
    # Shallow, well-populated leaves and a small step: quantile trees overfit quickly and
    # their q10-q90 interval then covers far less than 80% of unseen premiums.
    "max_depth": 4,
    "min_child_weight": 50,
    "eta": 0.05,
    "seed": SEED,
}


def load_csv(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    if LABEL not in header:
        raise SystemExit(f"{path}: no '{LABEL}' column")
    feature_cols = [i for i, name in enumerate(header) if name != LABEL and name not in IGNORED]
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2,
                      usecols=feature_cols + [header.index(LABEL)])
    # XGBoost works on float32 features; the service casts requests the same way.
    return [header[i] for i in feature_cols], data[:, :-1].astype(np.float32), data[:, -1]


def holdout_metrics(booster: xgb.Booster, x: np.ndarray, y: np.ndarray) -> dict:
    """Scores what the service would answer, in premiums (`y`, not its log)."""
    raw = booster.inplace_predict(x)
    q = exp_f32(np.sort(raw, axis=1))
    prediction, *_ = postprocess(raw)
    pred = prediction.astype(np.float64)
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    inside = (y >= q[:, 0]) & (y <= q[:, 2])
    return {
        "r2": round(float(r2), 6),
        "interval_coverage": round(float(inside.mean()), 6),
        "mae": round(float(np.mean(np.abs(y - pred))), 6),
    }


def train(data_path, out_dir) -> dict:
    names, x, y = load_csv(data_path)
    order = np.random.default_rng(SEED).permutation(len(y))
    n_holdout = int(round(len(y) * HOLDOUT_SHARE))
    hold, fit = order[:n_holdout], order[n_holdout:]

    if not (y > 0).all():
        raise SystemExit(f"{data_path}: every '{LABEL}' must be above 0 to learn its log")
    dtrain = xgb.QuantileDMatrix(x[fit], np.log(y[fit]), feature_names=names)
    booster = xgb.train(PARAMS, dtrain, num_boost_round=NUM_ROUNDS)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_bytes = bytes(booster.save_raw("json"))
    (out_dir / "model.json").write_bytes(model_bytes)
    metadata = {
        "model_version": "xgb-" + hashlib.sha256(model_bytes).hexdigest()[:12],
        "feature_names": names,
        "target": TARGET,
        "quantiles": QUANTILES,
        "confidence": CONFIDENCE_FORMULA,
        "metrics": {**holdout_metrics(booster, x[hold], y[hold]),
                    "n_train": len(fit), "n_holdout": n_holdout},
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=HERE / "data" / "train.csv", type=Path)
    parser.add_argument("--out-dir", default=HERE / "model", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    metadata = train(args.data, args.out_dir)
    m = metadata["metrics"]
    print(f"model_version      {metadata['model_version']}")
    print(f"features           {len(metadata['feature_names'])}: {', '.join(metadata['feature_names'])}")
    print(f"rows               train {m['n_train']}, holdout {m['n_holdout']}")
    print(f"holdout R2 (q50)   {m['r2']:.4f}")
    print(f"holdout MAE        {m['mae']:.2f}")
    print(f"q10-q90 coverage   {m['interval_coverage']:.3f} (target 0.80)")
    print(f"trained in         {time.perf_counter() - started:.1f}s -> {args.out_dir}")


if __name__ == "__main__":
    main()
