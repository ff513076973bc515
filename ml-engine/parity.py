"""What the engine answers for rows of features, as float32 bits: the reference of the Rust
evaluator's parity test (shared/tests/model_parity.rs).

    python parity.py MODEL_DIR FEATURES_FILE

FEATURES_FILE has one row a line, the float64 features in feature_names order, comma-separated
(NaN for a missing value). Prints the model_version, then one line a row: the prediction's
the confidence's, the 10% premium's and the 90% premium's float32 bits in hex.
"""
import sys

import numpy as np

from model_core import Model


def main() -> None:
    model_dir, features_file = sys.argv[1:]
    model = Model(model_dir)
    rows = np.loadtxt(features_file, delimiter=",", dtype=np.float64, ndmin=2)
    # Rounded once to float32, as the engine does with a request's float64 values.
    outputs = model.predict(rows.astype(np.float32))
    lines = [model.version] + [
        " ".join(f"{bits:08x}" for bits in row)
        for row in zip(*(output.view(np.uint32) for output in outputs))
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
