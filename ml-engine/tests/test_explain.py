"""POST /explain/batch: each feature's contribution to the median output, as XGBoost's
pred_contribs computes them, with the same request shape and checks as /predict/batch."""
import json

import numpy as np
import xgboost as xgb
from conftest import FEATURES, item


def explain(client, body):
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post("/explain/batch", content=content,
                       headers={"content-type": "application/json"})


def test_explanations_are_xgboosts_median_contributions_in_order(client, model_dir, metadata):
    items = [item(f"q{i}", driver_age=20.0 + i, prior_claims=i % 4) for i in range(30)]
    r = explain(client, items)
    assert r.status_code == 200
    results = r.json()
    assert [x["quote_id"] for x in results] == [f"q{i}" for i in range(30)]

    rows = np.array([[it["features"][n] for n in FEATURES] for it in items], dtype=np.float32)
    booster = xgb.Booster(model_file=str(model_dir / "model.json"))
    expected = booster.predict(xgb.DMatrix(rows, feature_names=FEATURES),
                               pred_contribs=True)[:, 1, :]
    median = booster.predict(xgb.DMatrix(rows, feature_names=FEATURES), output_margin=True)[:, 1]
    for x, contribs, margin in zip(results, expected.tolist(), median.tolist()):
        assert set(x) == {"quote_id", "units", "base", "contributions", "model_version"}
        assert x["units"] == "ln(premium)"
        assert x["model_version"] == metadata["model_version"]
        assert list(x["contributions"]) == FEATURES
        assert list(x["contributions"].values()) + [x["base"]] == contribs
        total = x["base"] + sum(x["contributions"].values())
        assert abs(total - margin) <= 1e-4 * max(abs(margin), 1)


def test_explain_checks_requests_as_predict_does(client):
    assert explain(client, []).json() == []
    r = explain(client, [item("ok"), item("bad", colour=1.0)])
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_features", "invalid": [
        {"quote_id": "bad", "problems": ["unknown feature: colour"]}]}
    assert explain(client, "{").json()["error"] == "invalid_request"
    r = explain(client, [item(f"q{i}") for i in range(1001)])
    assert (r.status_code, r.json()["error"]) == (413, "batch_too_large")
