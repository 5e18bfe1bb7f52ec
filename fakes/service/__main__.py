"""``python -m fakes.service --port 8200 [--host 127.0.0.1] [--secret S] [--keep-alive 5]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fakes.service.app import create_app
from fakes.service.server import build_server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.service",
        description="Programmable stand-in for the internal AI service (control API: /_control/).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8200, help="port (0 picks a free one)")
    parser.add_argument("--secret", default=None, help="require this X-Internal-Secret")
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (uvicorn timeout_keep_alive)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    server = build_server(
        create_app(secret=args.secret),
        host=args.host,
        port=args.port,
        keep_alive=args.keep_alive,
        log_level=args.log_level,
        # One line with the URL, flushed, so a harness can wait for it.
        on_ready=lambda url: print(url, flush=True),
    )
    server.run()


if __name__ == "__main__":
    main()
