import hashlib

import train
from conftest import FEATURES


def test_metadata_describes_model(model_dir, metadata):
    model_bytes = (model_dir / "model.json").read_bytes()
    assert metadata["model_version"] == "xgb-" + hashlib.sha256(model_bytes).hexdigest()[:12]
    assert metadata["feature_names"] == FEATURES  # header order, quote_id and premium dropped
    assert metadata["quantiles"] == [0.1, 0.5, 0.9]
    assert "confidence" in metadata and "trained_at" not in metadata


def test_holdout_metrics(metadata):
    m = metadata["metrics"]
    assert (m["n_train"], m["n_holdout"]) == (1600, 400)
    assert m["r2"] > 0.8
    assert 0.6 < m["interval_coverage"] <= 1.0
    assert m["mae"] > 0


def test_training_is_deterministic(tmp_path, csv_path, model_dir, metadata):
    again = train.train(csv_path, tmp_path)
    assert (tmp_path / "model.json").read_bytes() == (model_dir / "model.json").read_bytes()
    assert (tmp_path / "metadata.json").read_bytes() == (model_dir / "metadata.json").read_bytes()
    assert again == metadata
