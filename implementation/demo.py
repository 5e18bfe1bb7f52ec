"""Run the whole stack on loopback: fake LLM, service, gateway, and a demo user.

    nox -s demo            # or: python -m implementation.demo  (from the repository root)

The LLM is the project's fake (deterministic, streams word by word), so the demo
needs no API key; point LLM_BASE_URL at a real OpenAI-compatible server to use one.
Ctrl-C stops every process.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: {url} exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # poll interval
    raise SystemExit(f"demo: {url} not ready after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--service-port", type=int, default=8001)
    parser.add_argument("--llm-port", type=int, default=8100)
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="demo-password")
    args = parser.parse_args()

    secret = os.environ.get("FASTAPI_SECRET") or secrets.token_urlsafe(32)
    llm_url = os.environ.get("LLM_BASE_URL") or f"http://{HOST}:{args.llm_port}/v1"
    service_url = f"http://{HOST}:{args.service_port}"
    gateway_url = f"http://{HOST}:{args.gateway_port}"
    env = {
        **os.environ,
        "FASTAPI_SECRET": secret,  # the service's name for it
        "SERVICE_SECRET": secret,  # the gateway's
        "SERVICE_BASE_URL": service_url,
        "LLM_BASE_URL": llm_url,
        "LLM_API_KEY": os.environ.get("LLM_API_KEY", "sk-demo"),
        "LLM_MODEL": os.environ.get("LLM_MODEL", "fake-model"),
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        "DJANGO_DB_PATH": os.environ.get("DJANGO_DB_PATH", str(HERE / "db.sqlite3")),
    }
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--host", HOST, "--no-access-log"]
    fake_llm = [python, "-m", "fakes.llm"]  # a separate process: the implementation imports no fake
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
        processes.append(process)
        return process

    try:
        if not os.environ.get("LLM_BASE_URL"):
            llm = spawn(
                [*fake_llm, "--host", HOST, "--port", str(args.llm_port), "--token-delay", "0.05"],
                REPO,
            )
            wait_ready(f"{llm_url}/models", llm)
        service = spawn(
            [
                *uvicorn,
                "fastapi_service.main:app",
                "--port",
                str(args.service_port),
                "--timeout-keep-alive",
                "5",
            ],
            HERE,
        )
        wait_ready(f"{service_url}/health", service)
        for command in (
            ["migrate", "--noinput", "-v", "0"],
            ["ensure_user", args.username, "--password", args.password],
        ):
            subprocess.run([python, "manage.py", *command], cwd=HERE, env=env, check=True)
        gateway = spawn(
            [
                *uvicorn,
                "lamla.asgi:application",
                "--port",
                str(args.gateway_port),
                "--lifespan",
                "on",
                # Idle browser connections outlive the clients' own keep-alive (README).
                "--timeout-keep-alive",
                "75",
                # X-Forwarded-* believed only from GATEWAY_TRUSTED_PROXIES (gateway/asgi/edge.py).
                "--no-proxy-headers",
            ],
            HERE,
        )
        wait_ready(f"{gateway_url}/api/health/", gateway)
        print(
            BANNER.format(
                gateway=gateway_url,
                service=service_url,
                llm=llm_url,
                user=args.username,
                password=args.password,
            ),
            flush=True,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)  # supervise: stop everything if one part dies
        print("demo: a process exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


BANNER = """
  gateway  {gateway}   (Django, ASGI: the only public part)
  service  {service}   (FastAPI, needs X-Internal-Secret)
  LLM      {llm}

Log in and stream a chat with curl (user {user!r}, password {password!r}):

  curl -s -c jar -b jar {gateway}/api/auth/csrf/
  curl -s -c jar -b jar -H "X-CSRFToken: $(awk '/csrftoken/{{print $7}}' jar)" \\
       -H 'Content-Type: application/json' \\
       -d '{{"username": "{user}", "password": "{password}"}}' {gateway}/api/auth/login/
  curl -N -s -c jar -b jar -H "X-CSRFToken: $(awk '/csrftoken/{{print $7}}' jar)" \\
       -H 'Content-Type: application/json' \\
       -d '{{"message": "Tell me about streaming proxies"}}' {gateway}/api/chat/stream/

Ctrl-C stops everything.
"""

if __name__ == "__main__":
    main()
