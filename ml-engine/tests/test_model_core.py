import json
import shutil

import numpy as np
import pytest

from model_core import Model, exp_f32, postprocess

# Inputs and the bits exp_f32 gives: the Rust evaluator's unit test holds the same list
# (shared/src/adapters/model/mod.rs, EXP_BITS).
EXP_BITS = [
    (0.0, 0x3F800000), (1.0, 0x402DF854), (-1.0, 0x3EBC5AB2), (5.0103, 0x4315F322),
    (7.25, 0x44B0035B), (10.5, 0x470DDB81), (16.2, 0x4B259C98), (88.7, 0x7F7A37FC),
    (89.0, 0x7F800000), (-103.9, 0x00000001), (-104.5, 0x00000000),
]


def test_exp_f32_gives_the_rust_evaluators_bits():
    x = np.array([x for x, _ in EXP_BITS], dtype=np.float32)
    assert exp_f32(x).view(np.uint32).tolist() == [bits for _, bits in EXP_BITS]
    special = exp_f32(np.array([np.nan, np.inf, -np.inf], dtype=np.float32))
    assert np.isnan(special[0]) and special[1] == np.inf and special[2] == 0


def test_exp_f32_is_numpys_exp_rounded_to_float32_to_within_an_ulp():
    x = np.linspace(-110, 95, 1_000_000, dtype=np.float32)
    with np.errstate(over="ignore"):
            expected = np.exp(x.astype(np.float64)).astype(np.float32).view(np.uint32).astype(np.int64)
    ulps = np.abs(exp_f32(x).view(np.uint32).astype(np.int64) - expected)
    assert ulps.max() <= 1 and (ulps == 0).mean() > 0.999


def test_postprocess_sorts_the_log_quantiles_then_takes_exp():
    prediction, confidence, low, high = postprocess(np.array([[8.5, 7.25, 6.0]], dtype=np.float32))
    q10, q50, q90 = exp_f32(np.array([6.0, 7.25, 8.5], dtype=np.float32))
    assert prediction[0] == q50 == np.float32(1408.1049)
    assert (low[0], high[0]) == (q10, q90)
    assert confidence[0] == np.float32(1) / (np.float32(1) + (q90 - q10) / q50)
    assert confidence.dtype == prediction.dtype == np.float32


def test_a_model_of_another_target_is_refused(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    del metadata["target"]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="predicts None, not 'ln\\(premium\\)'"):
        Model(tmp_path)
