"""Schemathesis hooks for testing the API through `cargo lambda watch`.

The emulator answers 500 by itself, before invoking the function, to requests whose header
values are not ASCII or whose body is not UTF-8 (API Gateway would hand those to the function,
base64-encoded). Such cases test the emulator, not the API, so they are skipped here; the
handler's own tests send them to the function directly.

The emulator also now and then answers a 500 of its own to an ordinary request, with an RFC 7807
body and no invocation of the function (nothing in its log). `api_answers_as_documented` stands
in for the built-in `not_a_server_error` and `status_code_conformance` checks: it fails on every
5xx and every undocumented status, except that one emulator answer, which the API never gives
(its errors are `{"code", "message"}`).
"""

import json

import schemathesis

EMULATOR_500 = {"type": "https://httpstatuses.com/500", "status": 500, "title": "Internal Server Error"}


def _deliverable(case) -> bool:
    headers = case.headers or {}
    if not all(str(k).isascii() and str(v).isascii() for k, v in headers.items()):
        return False
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


@schemathesis.hook
def filter_case(ctx, case) -> bool:
    return _deliverable(case)


def _emulator_500(response) -> bool:
    if response.status_code != 500:
        return False
    try:
        return json.loads(response.content) == EMULATOR_500
    except ValueError:
        return False


@schemathesis.check
def api_answers_as_documented(ctx, response, case):
    if _emulator_500(response):
        return
    if response.status_code >= 500:
        raise AssertionError(f"server error {response.status_code}: {response.content[:300]!r}")
    if case.method.upper() != case.operation.method.upper():
        # Other methods are `unsupported_method`'s to judge (a 405 with Allow).
        return
    documented = set(case.operation.definition.raw.get("responses", {}))
    if str(response.status_code) not in documented and "default" not in documented:
        raise AssertionError(f"undocumented status {response.status_code}; documented {sorted(documented)}")
