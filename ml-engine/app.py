"""Premium-model HTTP service.

    uvicorn app:create_app --factory --host 127.0.0.1 --port ${ML_ENGINE_PORT:-8001}

Env: MODEL_DIR (default: model/ next to this file), ML_MAX_BATCH (default 1000).
The batch body is parsed with json.loads and checked in bulk rather than through
per-item pydantic models: a 1000-item batch takes ~8 ms on 2 cores, mostly
json.loads and the trees themselves.
"""
import json
import logging
import os
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from model_core import Model

HERE = Path(__file__).resolve().parent
NUMBER_TYPES = {int, float}  # exact types: JSON true/false (bool) are not numbers here
log = logging.getLogger("uvicorn.error")


class InvalidRequest(Exception):
    pass


def _error(status: int, error: str, **fields) -> JSONResponse:
    return JSONResponse({"error": error, **fields}, status_code=status)


def _split_items(items) -> tuple[list[str], list[dict]]:
    if type(items) is not list:
        raise InvalidRequest("body must be a JSON array")
    ids, features = [], []
    for i, item in enumerate(items):
        if (type(item) is not dict or type(item.get("quote_id")) is not str
                or type(item.get("features")) is not dict):
            raise InvalidRequest(f"item {i} must be an object with a string 'quote_id' "
                                 "and an object 'features'")
        ids.append(item["quote_id"])
        features.append(item["features"])
    return ids, features


class FeatureSchema:
    """Checks request features by name and orders them as the model's feature_names."""

    def __init__(self, names: list[str]):
        self.names = names
        self.expected = set(names)
        self.getter = itemgetter(*names)

    def matrix(self, features: list[dict]) -> np.ndarray | None:
        """Float32 (n, n_features) matrix, or None if anything is off (`problems` explains)."""
        if not all(feats.keys() == self.expected for feats in features):
            return None
        values = chain.from_iterable(feats.values() for feats in features)
        if not set(map(type, values)) <= NUMBER_TYPES:
            return None
        try:
            # Parsed as float64 (like a JSON number), then rounded once to float32.
            rows = np.array(list(map(self.getter, features)), dtype=np.float64)
        except OverflowError:  # integers beyond float64
            return None
        with np.errstate(over="ignore"):
            matrix = rows.astype(np.float32).reshape(len(features), len(self.names))
        return matrix if np.isfinite(matrix).all() else None

    def problems(self, feats: dict) -> list[str]:
        problems = [f"missing feature: {n}" for n in self.names if n not in feats]
        problems += [f"unknown feature: {k}" for k in feats if k not in self.expected]
        for name in self.names:
            if name not in feats:
                continue
            value = feats[name]
            if type(value) not in NUMBER_TYPES:
                problems.append(f"non-numeric feature: {name}")
                continue
            try:
                with np.errstate(over="ignore"):
                    finite = bool(np.isfinite(np.float32(float(value))))
            except OverflowError:
                finite = False
            if not finite:
                problems.append(f"non-finite feature: {name}")
        return problems


def create_app(model_dir=None) -> FastAPI:
    """App serving the model in model_dir (default: $MODEL_DIR, else model/ beside this file)."""
    model = Model(model_dir or os.environ.get("MODEL_DIR", HERE / "model"))
    max_batch = int(os.environ.get("ML_MAX_BATCH", "1000"))
    schema = FeatureSchema(model.feature_names)
    log.info("loaded model %s (%d features)", model.version, len(schema.names))

    app = FastAPI(title="ml-engine", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health():
        return {"status": "ok", "model_version": model.version, "feature_names": schema.names}

    # async: the work is a few ms of CPU, cheaper inline than via the thread pool.
    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        try:
            items = json.loads(await request.body())
        except ValueError as exc:  # also covers bad UTF-8
            return _error(422, "invalid_request", message=f"body is not valid JSON: {exc}")
        if type(items) is list and len(items) > max_batch:
            return _error(413, "batch_too_large", max=max_batch,
                          message=f"batch has {len(items)} items; the limit is {max_batch}")
        try:
            ids, features = _split_items(items)
        except InvalidRequest as exc:
            return _error(422, "invalid_request", message=str(exc))
        if not ids:
            return JSONResponse([])

        matrix = schema.matrix(features)
        if matrix is None:
            invalid = [{"quote_id": qid, "problems": problems}
                       for qid, feats in zip(ids, features)
                       if (problems := schema.problems(feats))]
            return _error(422, "invalid_features", invalid=invalid)

        prediction, confidence = model.predict(matrix)
        return JSONResponse([
            {"quote_id": qid, "prediction": p, "confidence": c, "model_version": model.version}
            for qid, p, c in zip(ids, prediction.tolist(), confidence.tolist())
        ])

    return app
