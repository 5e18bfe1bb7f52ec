"""`python -m fakes.llm --port 8100`: run the fake LLM on loopback."""

from __future__ import annotations

import argparse

from fakes.llm.app import create_app
from fakes.llm.server import AnnouncingServer, build_config

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.llm", description="OpenAI-compatible fake LLM with a control API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="port (default 8100, 0 = any free)")
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS)
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        help="seconds between the tokens of the default reply (default 0)",
    )
    return parser.parse_args(argv)


def announce(url: str) -> None:
    print(f"fakes.llm ready at {url} (LLM_BASE_URL={url}/v1)", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = build_config(
        create_app(token_delay=args.token_delay),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )
    AnnouncingServer(config, announce).run()


if __name__ == "__main__":
    main()
