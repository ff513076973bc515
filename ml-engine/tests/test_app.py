import json

import numpy as np
import pytest
import xgboost as xgb
from conftest import FEATURES, item
from fastapi.testclient import TestClient

from app import create_app
from model_core import exp_f32


def post(client, body):
    """Raw text so NaN / 1e999 literals reach the server as sent."""
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post("/predict/batch", content=content,
                       headers={"content-type": "application/json"})


def test_health(client, metadata):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model_version": metadata["model_version"],
                        "feature_names": FEATURES}


def test_predict_batch_in_order(client, metadata):
    items = [item(f"q{i}", driver_age=20.0 + i, prior_claims=i % 4) for i in range(50)]
    r = post(client, items)
    assert r.status_code == 200
    results = r.json()
    assert [x["quote_id"] for x in results] == [f"q{i}" for i in range(50)]
    for x in results:
        assert set(x) == {"quote_id", "prediction", "prediction_low", "prediction_high",
                          "confidence", "model_version"}
        assert 0 <= x["prediction_low"] <= x["prediction"] <= x["prediction_high"]
        assert 0 < x["confidence"] <= 1
        assert x["model_version"] == metadata["model_version"]


def test_numbers_match_booster(client, model_dir):
    """The service only applies the documented post-processing to the booster output: exp of
    the sorted log quantiles, then float32 arithmetic."""
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(18, 80, 200), rng.uniform(5e3, 8e4, 200),
                            rng.uniform(2e3, 4e4, 200), rng.integers(0, 5, 200),
                            rng.uniform(0.5, 2.0, 200)]).astype(np.float32)
    items = [{"quote_id": str(i), "features": dict(zip(FEATURES, map(float, row)))}
             for i, row in enumerate(rows)]
    results = post(client, items).json()

    booster = xgb.Booster(model_file=str(model_dir / "model.json"))
    q = exp_f32(np.sort(booster.inplace_predict(rows), axis=1))
    assert q.dtype == np.float32
    one = np.float32(1)
    confidence = one / (one + (q[:, 2] - q[:, 0]) / np.maximum(q[:, 1], one))
    assert [x["prediction"] for x in results] == q[:, 1].tolist()
    assert [x["confidence"] for x in results] == confidence.tolist()
    assert [x["prediction_low"] for x in results] == np.maximum(q[:, 0], np.float32(0)).tolist()
    assert [x["prediction_high"] for x in results] == np.maximum(q[:, 2], np.float32(0)).tolist()


def test_empty_batch(client):
    r = post(client, [])
    assert (r.status_code, r.json()) == (200, [])


def test_invalid_features_lists_only_invalid_items(client):
    body = json.dumps([
        item("ok-1"),
        {"quote_id": "missing", "features": {k: 1.0 for k in FEATURES[1:]}},
        item("unknown", colour=3.0),
        item("text", driver_age="forty"),
        item("flag", prior_claims=True),
        item("ok-2"),
    ])
    body = body[:-1] + ', {"quote_id": "nan", "features": {"driver_age": NaN, "vehicle_value": 1e999,' \
        ' "annual_mileage": 1e300, "prior_claims": -Infinity, "region_risk": 1}}]'
    r = post(client, body)
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_features", "invalid": [
        {"quote_id": "missing", "problems": ["missing feature: driver_age"]},
        {"quote_id": "unknown", "problems": ["unknown feature: colour"]},
        {"quote_id": "text", "problems": ["non-numeric feature: driver_age"]},
        {"quote_id": "flag", "problems": ["non-numeric feature: prior_claims"]},
        {"quote_id": "nan", "problems": [
            "non-finite feature: driver_age", "non-finite feature: vehicle_value",
            "non-finite feature: annual_mileage",  # finite in float64, not in float32
            "non-finite feature: prior_claims"]},
    ]}


def test_huge_integer_is_non_finite(client):
    body = json.dumps([item("big", annual_mileage=10 ** 400)])
    r = post(client, body)
    assert r.status_code == 422
    assert r.json()["invalid"] == [{"quote_id": "big",
                                    "problems": ["non-finite feature: annual_mileage"]}]


def test_batch_too_large(client):
    r = post(client, [item(f"q{i}") for i in range(1001)])
    assert r.status_code == 413
    assert r.json()["error"] == "batch_too_large" and r.json()["max"] == 1000


def test_max_batch_is_configurable(model_dir, monkeypatch):
    monkeypatch.setenv("ML_MAX_BATCH", "2")
    client = TestClient(create_app(model_dir))
    assert post(client, [item("a"), item("b")]).status_code == 200
    assert post(client, [item("a"), item("b"), item("c")]).json()["max"] == 2


@pytest.mark.parametrize("body", [
    "not json",
    '{"quote_id": "q1", "features": {}}',
    '[{"features": {"driver_age": 1}}]',
    '[{"quote_id": 7, "features": {}}]',
    '[{"quote_id": "q1", "features": [1, 2]}]',
    '["q1"]',
])
def test_malformed_body(client, body):
    r = post(client, body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and r.json()["message"]
