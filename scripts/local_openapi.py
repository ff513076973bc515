"""Writes the OpenAPI document as `cargo lambda watch` serves it, for schemathesis.

Deployed, API Gateway's JWT authorizer names the caller; locally the `local-identity` build
takes it from the `x-local-user` header. Only the security scheme differs.
"""

import sys

import yaml


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        doc = yaml.safe_load(f)
    doc["components"]["securitySchemes"] = {
        "local": {"type": "apiKey", "in": "header", "name": "x-local-user"}}
    doc["security"] = [{"local": []}]
    with open(target, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


if __name__ == "__main__":
    main()
