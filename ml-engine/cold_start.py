"""Measures the Lambda engine's cold start on this machine: a fresh interpreter importing
lambda_handler (the libraries, then the app and its model) and answering its first events.

    python cold_start.py --packages DIR [--runs 7] [--model-dir model]

DIR holds the Lambda package's libraries, installed as the Makefile installs them (without
bytecode, `pip install --no-compile --target DIR ... -r requirements-lambda.txt`; here for this
machine's Python). Each run is `python -B`, so nothing is compiled ahead or cached between
runs: as on Lambda, whose read-only package holds no bytecode for its Python. Prints the
median and range of each phase, in ms.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVENTS = HERE.parent / "events" / "ml-engine"

# Run in the fresh interpreter: phase timings as JSON on stdout.
PROBE = """
import json, sys, time
start = time.perf_counter()
import numpy, xgboost, fastapi, mangum  # the libraries alone
libraries = time.perf_counter()
import lambda_handler  # the app and its model
init = time.perf_counter()
events = [json.load(open(p)) for p in sys.argv[1:]]
for event in events:
    assert lambda_handler.handler(event, None)["statusCode"] == 200
first = time.perf_counter()
print(json.dumps({"libraries": libraries - start, "app_and_model": init - libraries,
                  "init": init - start, "first_events": first - init}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--model-dir", type=Path, default=HERE / "model")
    args = parser.parse_args()
    events = [str(EVENTS / "200-health.json"), str(EVENTS / "200-predict-batch.json")]
    env = {"PYTHONPATH": f"{args.packages.resolve()}:{HERE}", "MODEL_DIR": str(args.model_dir),
           "PATH": "/usr/bin:/bin"}
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-B", "-c", PROBE, *events], env=env, cwd="/",
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out))
    for phase in runs[0]:
        values = sorted(1000 * r[phase] for r in runs)
        print(f"{phase:>14}: median {statistics.median(values):7.0f} ms "
              f"(min {values[0]:.0f}, max {values[-1]:.0f}, {len(values)} runs)")


if __name__ == "__main__":
    main()
