"""Hostile bodies: too large, too deep, not encodable. Each is a 4xx, never a 500, and an
oversized body is refused before it is read or parsed whole."""
import asyncio
import json

import pytest
from conftest import FEATURES, item
from fastapi.testclient import TestClient

import app as app_module
from app import DEFAULT_MAX_BODY_BYTES, create_app


def post(client, content):
    return client.post("/predict/batch", content=content,
                       headers={"content-type": "application/json"})


@pytest.fixture
def small_limit_app(model_dir, monkeypatch):
    monkeypatch.setenv("ML_MAX_BODY_BYTES", "1000")
    return create_app(model_dir)


def test_a_body_over_the_limit_is_413_and_not_parsed(small_limit_app, monkeypatch):
    def no_parse(*_):
        raise AssertionError("an oversized body was parsed")

    body = json.dumps([item(f"q{i}") for i in range(20)])
    with monkeypatch.context() as m:  # the json module is shared: patched for the call only
        m.setattr(app_module.json, "loads", no_parse)
        # raise_server_exceptions (the default) turns a 500 into a failure here.
        r = post(TestClient(small_limit_app), body)
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large" and r.json()["max_bytes"] == 1000


def test_a_body_at_the_limit_is_read(small_limit_app):
    body = json.dumps([item("q")])
    body += " " * (1000 - len(body))
    assert len(body) == 1000
    assert post(TestClient(small_limit_app), body).status_code == 200


def run_asgi(app, chunks, headers=()):
    """Sends a streamed POST /predict/batch to the ASGI app itself (TestClient reads a body
    whole before the app sees it); returns the status and how many chunks the app pulled."""
    pulled = 0
    sent = []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict/batch", "raw_path": b"/predict/batch",
             "root_path": "", "query_string": b"", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"content-type", b"application/json"), *headers]}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], pulled


def stream(n=50, chunk=b"[" + b" " * 399):
    """n chunks of 400 bytes (20,000 in all): a body whose length is known only by reading it."""
    return [chunk] * n


def test_a_streamed_body_without_a_length_stops_being_read_at_the_limit(small_limit_app):
    status, pulled = run_asgi(small_limit_app, stream())
    assert status == 413
    assert pulled == 3  # 400, 800, 1200 bytes: over the limit, and no further


def test_a_declared_length_over_the_limit_is_refused_before_reading(small_limit_app):
    status, pulled = run_asgi(small_limit_app, stream(), headers=[(b"content-length", b"1001")])
    assert (status, pulled) == (413, 0)


def test_the_default_limit_fits_the_largest_batch_the_pipeline_sends(client, model_dir):
    """1,000 items (ML_MAX_BATCH) of a 36-character id and 13 features (the project's model),
    each value the longest a Rust f64 prints as: well inside the default."""
    names = FEATURES + [f"extra_{i}" for i in range(13 - len(FEATURES))]
    worst = {"quote_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
             "features": {n: -1.2345678901234567e-300 for n in names}}
    size = len(json.dumps([worst] * 1000))
    assert size * 3 < DEFAULT_MAX_BODY_BYTES
    # The engine reads such a body (here a 422, as its features are not this model's).
    assert post(client, json.dumps([worst] * 1000)).status_code == 422


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 100_000 + "1" + "}" * 100_000,
    json.dumps([item("q")])[:-3] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}}]",
], ids=["arrays", "objects", "inside-features"])
def test_deeply_nested_json_is_a_422(client, body):
    r = post(client, body)
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_request", "message": "body is nested too deeply"}


@pytest.mark.parametrize("extra,problem", [
    # Nested within the parser's reach: parsed, and an unknown feature like any other.
    ('"deep": ' + "[" * 500 + "]" * 500, "unknown feature: deep"),
    # A name with a lone surrogate is echoed printably.
    ('"x\\udfff": 1', "unknown feature: x\ufffd"),
], ids=["nested-500-deep", "lone-surrogate-name"])
def test_an_odd_extra_feature_is_named_in_a_422(client, extra, problem):
    body = json.dumps([item("q")])[:-3] + ", " + extra + "}}]"
    r = post(client, body)
    assert r.status_code == 422
    assert r.json()["invalid"] == [{"quote_id": "q", "problems": [problem]}]


def test_a_quote_id_with_a_lone_surrogate_is_a_422(client):
    body = json.dumps([item("q")]).replace('"q"', '"q\\ud800"')
    r = post(client, body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and "quote_id" in r.json()["message"]


def test_a_surrogate_pair_is_an_ordinary_character(client):
    body = json.dumps([item("q")]).replace('"q"', '"q\\ud83d\\ude00"')
    r = post(client, body)
    assert r.status_code == 200 and r.json()[0]["quote_id"] == "q\U0001F600"
