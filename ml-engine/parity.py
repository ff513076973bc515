"""What the engine answers for rows of features, as float32 bits: the reference of the Rust
evaluator's parity tests (shared/tests/model_parity.rs).

    python parity.py MODEL_DIR FEATURES_FILE [--explain]

FEATURES_FILE has one row a line, the float64 features in feature_names order, comma-separated
(NaN for a missing value). Prints the model_version, then one line a row: the prediction's
the confidence's, the 10% premium's and the 90% premium's float32 bits in hex; with
`--explain`, each feature's contribution to the median's output and the bias instead
(`Model.explain`).
"""
import sys

import numpy as np

from model_core import Model


def main() -> None:
    model_dir, features_file, *mode = sys.argv[1:]
    model = Model(model_dir)
    rows = np.loadtxt(features_file, delimiter=",", dtype=np.float64, ndmin=2)
    # Rounded once to float32, as the engine does with a request's float64 values.
    matrix = rows.astype(np.float32)
    if mode == ["--explain"]:
        columns = np.ascontiguousarray(model.explain(matrix).T)
    elif not mode:
        columns = model.predict(matrix)
    else:
        raise SystemExit(f"unknown arguments {mode}")
    lines = [model.version] + [
        " ".join(f"{bits:08x}" for bits in row)
        for row in zip(*(column.view(np.uint32) for column in columns))
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
