"""Write the service's OpenAPI document to spec/service.openapi.yaml.

The spec file is generated from the app, never edited by hand, so the served
`/openapi.json` and the contract's YAML cannot drift apart (SVC-OAS-1).

    cd implementation && python -m fastapi_service.export_openapi [--check] [--output PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from fastapi_service.core.config import Settings
from fastapi_service.main import create_app

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "spec" / "service.openapi.yaml"
HEADER = """\
# GENERATED FILE - do not edit by hand.
# The OpenAPI description of the internal FastAPI service, exported from the app itself.
# Regenerate after changing routes or schemas:
#     cd implementation && python -m fastapi_service.export_openapi
"""


def openapi_document() -> dict[str, Any]:
    """The document the app serves; the settings are dummies and do not affect it."""
    settings = Settings(secret="export-only-dummy-secret")  # noqa: S106 - never used to serve
    return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="fail if the file is not up to date; write nothing"
    )
    args = parser.parse_args(argv)
    text = render(openapi_document())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m fastapi_service.export_openapi")
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
