"""How good the premium model is where clients are: the README's model figures come from here.

    python evaluate.py --model-dir model --data data/eval.csv

The data is the held-out evaluation set the Rust library writes (`training-data --evaluation`):
a `set` column (`generated`: quotes drawn like the generator's; `spread`: quotes spread over
the API's whole domain), the features, `expected_premium` (the noiseless synthetic truth) and
`premium` (the noisy truth). For each set it prints what the service answers measured against
them: R² of the prediction (the median) against the noiseless truth, the share of noisy
truths inside the model's 10-90% range, the median and 99th-percentile absolute percentage
error against the noiseless truth, and the least price. Exits 1 if a target is missed.
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from model_core import Model, exp_f32

HERE = Path(__file__).resolve().parent
SETS = ("generated", "spread")
R2_MIN = 0.97
COVERAGE_TARGET, COVERAGE_TOLERANCE = 0.80, 0.03


def load(path) -> dict[str, tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Per set: feature names, float32 features, noiseless and noisy truths."""
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if header[0] != "set" or header[-2:] != ["expected_premium", "premium"]:
            raise SystemExit(f"{path}: not an evaluation set (training-data --evaluation)")
        names = header[1:-2]
        by_set: dict[str, list[list[float]]] = {}
        for row in rows:
            by_set.setdefault(row[0], []).append([float(v) for v in row[1:]])
    out = {}
    for name, values in by_set.items():
        data = np.array(values, dtype=np.float64)
        # Rounded once to float32, as the engine does with a request's values.
        out[name] = (names, data[:, :-2].astype(np.float32), data[:, -2], data[:, -1])
    return out


def metrics(model: Model, x: np.ndarray, expected: np.ndarray, noisy: np.ndarray) -> dict:
    """What the service answers for `x`, measured against the truths."""
    raw = model.booster.inplace_predict(x)
    prediction = model.predict(x)[0].astype(np.float64)
    q = exp_f32(np.sort(raw, axis=1)).astype(np.float64)
    ape = np.abs(prediction - expected) / expected
    r2 = 1.0 - np.sum((expected - prediction) ** 2) / np.sum((expected - expected.mean()) ** 2)
    return {
        "rows": len(expected),
        "r2": float(r2),
        "coverage": float(((noisy >= q[:, 0]) & (noisy <= q[:, 2])).mean()),
        "ape_median": float(np.median(ape)),
        "ape_p99": float(np.quantile(ape, 0.99)),
        "min_price": float(prediction.min()),
    }


def evaluate(model_dir, data_path) -> dict[str, dict]:
    model = Model(model_dir)
    sets = load(data_path)
    results = {}
    for name in SETS:
        if name not in sets:
            raise SystemExit(f"{data_path}: no rows of the set {name!r}")
        names, x, expected, noisy = sets[name]
        if names != model.feature_names:
            raise SystemExit(f"{data_path}: features {names} are not the model's")
        results[name] = metrics(model, x, expected, noisy)
    return results


def misses(m: dict) -> list[str]:
    """The targets a set's metrics miss."""
    missed = []
    if m["r2"] < R2_MIN:
        missed.append(f"R² {m['r2']:.4f} < {R2_MIN}")
    if abs(m["coverage"] - COVERAGE_TARGET) > COVERAGE_TOLERANCE:
        missed.append(f"coverage {m['coverage']:.3f} outside {COVERAGE_TARGET} ± {COVERAGE_TOLERANCE}")
    if m["min_price"] <= 0:
        missed.append(f"a price of {m['min_price']}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=HERE / "model", type=Path)
    parser.add_argument("--data", default=HERE / "data" / "eval.csv", type=Path)
    args = parser.parse_args()
    results = evaluate(args.model_dir, args.data)
    print(f"model {Model(args.model_dir).version}, {args.data}")
    print(f"{'set':<10} {'rows':>6} {'R² (q50)':>9} {'10-90%':>7} {'APE p50':>8} {'APE p99':>8} "
          f"{'min price':>10}")
    missed = []
    for name, m in results.items():
        print(f"{name:<10} {m['rows']:>6} {m['r2']:>9.4f} {m['coverage']:>7.1%} "
              f"{m['ape_median']:>8.2%} {m['ape_p99']:>8.1%} {m['min_price']:>10.2f}")
        missed += [f"{name}: {miss}" for miss in misses(m)]
    print(f"targets: R² >= {R2_MIN}, 10-90% coverage {COVERAGE_TARGET:.0%} ± "
          f"{COVERAGE_TOLERANCE * 100:.0f} points, every price above 0")
    if missed:
        print("MISSED: " + "; ".join(missed))
        sys.exit(1)


if __name__ == "__main__":
    main()
