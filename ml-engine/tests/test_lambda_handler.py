"""The Lambda entry point, fed function URL events (payload format 2.0) as Lambda sends them:
the samples of events/ml-engine/ and variations of them. Each answer must be the HTTP app's
answer to the same request."""
import base64
import copy
import importlib
import json
import sys
from pathlib import Path

import pytest
from conftest import item
from fastapi.testclient import TestClient

from app import DEFAULT_MAX_BODY_BYTES, create_app

ENGINE = Path(__file__).resolve().parent.parent
EVENTS = ENGINE.parent / "events" / "ml-engine"
TRAINED_MODEL = ENGINE / "model"


def sample(name):
    return json.loads((EVENTS / f"{name}.json").read_text())


def load_handler(monkeypatch, model_dir):
    """Imports lambda_handler afresh, as a new execution environment does, serving model_dir."""
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    monkeypatch.delitem(sys.modules, "lambda_handler", raising=False)
    return importlib.import_module("lambda_handler").handler


@pytest.fixture
def handler(monkeypatch, model_dir):
    return load_handler(monkeypatch, model_dir)


def with_body(event, body: bytes, *, base64_encoded=False, content_length=True):
    """The sample event carrying another body, its headers as a function URL sets them."""
    event = copy.deepcopy(event)
    event["isBase64Encoded"] = base64_encoded
    event["body"] = base64.b64encode(body).decode() if base64_encoded else body.decode()
    if content_length:
        event["headers"]["content-length"] = str(len(body))
    else:
        event["headers"].pop("content-length", None)
    return event


def answer(response):
    """(status, JSON body) of a function URL response."""
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return response["statusCode"], json.loads(body)


def http_answer(model_dir, method, path, body=b""):
    client = TestClient(create_app(model_dir))
    r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    return r.status_code, r.json()


def test_health(handler, model_dir, metadata):
    response = handler(sample("200-health"), None)
    assert answer(response) == http_answer(model_dir, "GET", "/health")
    assert answer(response)[1]["model_version"] == metadata["model_version"]
    assert response["headers"]["content-type"] == "application/json"


def test_a_batch_is_priced_exactly_as_the_http_app_prices_it(handler, model_dir):
    body = json.dumps([item(f"q{i}", driver_age=20.0 + i, prior_claims=i % 4) for i in range(50)])
    status, results = answer(handler(with_body(sample("200-predict-batch"), body.encode()), None))
    assert status == 200 and len(results) == 50
    assert (status, results) == http_answer(model_dir, "POST", "/predict/batch", body.encode())


def test_a_base64_encoded_body_is_decoded_first(handler, model_dir):
    body = json.dumps([item("a"), item("b", prior_claims=3)]).encode()
    event = with_body(sample("200-predict-batch-base64"), body, base64_encoded=True)
    assert event["body"] != body.decode()
    assert answer(handler(event, None)) == http_answer(model_dir, "POST", "/predict/batch", body)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "undeclared"])
def test_a_body_over_the_limit_is_a_413(handler, content_length):
    body = b"[" + b" " * DEFAULT_MAX_BODY_BYTES + b"]"
    event = with_body(sample("200-predict-batch"), body, content_length=content_length)
    status, error = answer(handler(event, None))
    assert status == 413
    assert error["error"] == "body_too_large" and error["max_bytes"] == DEFAULT_MAX_BODY_BYTES


def test_too_many_items_is_a_413(handler):
    body = json.dumps([item(f"q{i}") for i in range(1001)]).encode()
    status, error = answer(handler(with_body(sample("200-predict-batch"), body), None))
    assert (status, error["error"]) == (413, "batch_too_large")


@pytest.mark.parametrize("name", ["422-predict-batch-not-json", "422-predict-batch-nested-too-deeply"])
def test_a_malformed_or_deeply_nested_body_is_a_422(handler, model_dir, name):
    event = sample(name)
    status, error = answer(handler(event, None))
    assert (status, error["error"]) == (422, "invalid_request")
    assert (status, error) == http_answer(model_dir, "POST", "/predict/batch", event["body"].encode())


def test_json_nested_far_beyond_the_recursion_limit_is_a_422(handler):
    event = with_body(sample("200-predict-batch"), b"[" * 100_000 + b"]" * 100_000)
    assert answer(handler(event, None)) == (
        422, {"error": "invalid_request", "message": "body is nested too deeply"})


def test_features_of_another_model_are_a_422_naming_the_quote(handler):
    body = json.dumps([item("q", colour=3.0)]).encode()
    status, error = answer(handler(with_body(sample("200-predict-batch"), body), None))
    assert status == 422
    assert error["invalid"] == [{"quote_id": "q", "problems": ["unknown feature: colour"]}]


@pytest.mark.skipif(not (TRAINED_MODEL / "metadata.json").exists(),
                    reason="needs the trained model in ml-engine/model (scripts/test trains it)")
def test_every_sample_event_answers_the_status_its_name_gives(monkeypatch):
    """events/ml-engine/<status>-<what>.json, against the project's trained model (the samples
    carry its 13 features), each also answered alike by the HTTP app."""
    handler = load_handler(monkeypatch, TRAINED_MODEL)
    names = sorted(p.stem for p in EVENTS.glob("*.json"))
    assert names
    for name in names:
        event = sample(name)
        body = event.get("body", "").encode()
        if event["isBase64Encoded"]:
            body = base64.b64decode(body)
        status, result = answer(handler(event, None))
        assert status == int(name.split("-")[0]), name
        http = http_answer(TRAINED_MODEL, event["requestContext"]["http"]["method"],
                           event["rawPath"], body)
        assert (status, result) == http, name
