"""Schemathesis hooks for testing the API through `cargo lambda watch`.

The emulator answers 500 by itself, before invoking the function, to requests whose header
values are not ASCII or whose body is not UTF-8 (API Gateway would hand those to the function,
base64-encoded). Such cases test the emulator, not the API, so they are skipped here; the
handler's own tests send them to the function directly.
"""

import schemathesis


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
