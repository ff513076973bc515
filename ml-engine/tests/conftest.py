"""Trains a small model on synthetic data once per session and serves it via TestClient."""
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import train
from app import create_app

FEATURES = ["driver_age", "vehicle_value", "annual_mileage", "prior_claims", "region_risk"]


def write_synthetic_csv(path, n_rows=2000, seed=7):
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n_rows)
    value = rng.uniform(5_000, 80_000, n_rows)
    mileage = rng.uniform(2_000, 40_000, n_rows)
    claims = rng.integers(0, 5, n_rows)
    region = rng.uniform(0.5, 2.0, n_rows)
    premium = (300 + 0.02 * value + 0.01 * mileage + 150 * claims + 400 * (age < 25)) * region
    premium += rng.normal(0, 40, n_rows)
    # quote_id sits between features to check it is skipped by name, not position.
    header = "driver_age,quote_id,vehicle_value,annual_mileage,prior_claims,region_risk,premium"
    lines = [header] + [
        f"{a:.1f},q-{i},{v:.2f},{m:.0f},{c},{r:.3f},{p:.2f}"
        for i, (a, v, m, c, r, p) in enumerate(zip(age, value, mileage, claims, region, premium))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def csv_path(tmp_path_factory):
    return write_synthetic_csv(tmp_path_factory.mktemp("data") / "train.csv")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, csv_path):
    out = tmp_path_factory.mktemp("model")
    train.train(csv_path, out)
    return out


@pytest.fixture(scope="session")
def metadata(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())


@pytest.fixture(scope="session")
def client(model_dir):
    with TestClient(create_app(model_dir)) as c:
        yield c


def item(quote_id, **overrides):
    features = {"driver_age": 40.0, "vehicle_value": 20_000.0, "annual_mileage": 12_000,
                "prior_claims": 1, "region_risk": 1.2}
    features.update(overrides)
    return {"quote_id": quote_id, "features": features}
