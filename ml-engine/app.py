"""Premium-model HTTP service.

    uvicorn app:create_app --factory --host 127.0.0.1 --port ${ML_ENGINE_PORT:-8001}

Env: MODEL_DIR (default: model/ next to this file), ML_MAX_BATCH (default 1000),
ML_MAX_BODY_BYTES (default 2 MiB; a 1000-item batch of the project's 13 features is at most
about 0.6 MB). A larger body is a 413, answered from its Content-Length or as soon as the
streamed bytes pass the limit, so it is never read or parsed whole.
POST /explain/batch takes the same body and answers each quote's TreeSHAP contributions to
the median (model_core.Model.explain).
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
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from model_core import Model

HERE = Path(__file__).resolve().parent
NUMBER_TYPES = {int, float}  # exact types: JSON true/false (bool) are not numbers here
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
log = logging.getLogger("uvicorn.error")


class InvalidRequest(Exception):
    pass


def _error(status: int, error: str, headers: dict | None = None, **fields) -> JSONResponse:
    return JSONResponse({"error": error, **fields}, status_code=status, headers=headers)


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's "\\ud800"): it has no UTF-8 form, so
    it can neither be echoed in an answer nor be anyone's quote id."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """A client-supplied name made safe to echo in an answer (lone surrogates become U+FFFD)."""
    if _is_unicode(name):
        return name
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` bytes: from its
    Content-Length before anything is read, else while it streams in, so an oversized body is
    neither buffered whole nor parsed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _split_items(items) -> tuple[list[str], list[dict]]:
    if type(items) is not list:
        raise InvalidRequest("body must be a JSON array")
    ids, features = [], []
    for i, item in enumerate(items):
        if (type(item) is not dict or type(item.get("quote_id")) is not str
                or type(item.get("features")) is not dict):
            raise InvalidRequest(f"item {i} must be an object with a string 'quote_id' "
                                 "and an object 'features'")
        if not _is_unicode(item["quote_id"]):
            raise InvalidRequest(f"item {i}: 'quote_id' is not valid Unicode (a lone surrogate)")
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
        problems += [f"unknown feature: {_printable(k)}" for k in feats if k not in self.expected]
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
    max_body = int(os.environ.get("ML_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    schema = FeatureSchema(model.feature_names)
    log.info("loaded model %s (%d features)", model.version, len(schema.names))

    app = FastAPI(title="ml-engine", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health():
        return {"status": "ok", "model_version": model.version, "feature_names": schema.names}

    async def read_batch(request: Request) -> tuple[list[str], np.ndarray] | JSONResponse:
        """The batch's quote ids and their float32 feature matrix, or the answer itself: an
        error, or `[]` for an empty batch."""
        body = await _read_body(request, max_body)
        if body is None:
            return _error(413, "body_too_large", max_bytes=max_body,
                          message=f"the body exceeds {max_body} bytes",
                          headers={"connection": "close"})
        try:
            items = json.loads(body)
        except ValueError as exc:  # also covers bad UTF-8
            return _error(422, "invalid_request", message=f"body is not valid JSON: {exc}")
        except RecursionError:  # nested deeper than the parser's recursion limit
            return _error(422, "invalid_request", message="body is nested too deeply")
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
        return ids, matrix

    # async: the work is a few ms of CPU, cheaper inline than via the thread pool.
    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        batch = await read_batch(request)
        if isinstance(batch, JSONResponse):
            return batch
        ids, matrix = batch
        prediction, confidence, low, high = (a.tolist() for a in model.predict(matrix))
        return JSONResponse([
            {"quote_id": qid, "prediction": p, "prediction_low": lo, "prediction_high": hi,
             "confidence": c, "model_version": model.version}
            for qid, p, lo, hi, c in zip(ids, prediction, low, high, confidence)
        ])

    # TreeSHAP costs about a millisecond a quote (XGBoost explains all three quantiles), so it
    # runs in the thread pool, leaving the event loop to health checks and predictions.
    @app.post("/explain/batch")
    async def explain_batch(request: Request):
        batch = await read_batch(request)
        if isinstance(batch, JSONResponse):
            return batch
        ids, matrix = batch
        contributions = await run_in_threadpool(model.explain, matrix)
        return JSONResponse([
            {"quote_id": qid, "units": model.target, "base": row[-1],
             "contributions": dict(zip(schema.names, row[:-1])),
             "model_version": model.version}
            for qid, row in zip(ids, contributions.tolist())
        ])

    return app
