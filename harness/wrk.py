"""Closed-loop small-request load: wrk when installed, else the asyncio client.

wrk (C, epoll) costs far less CPU per request than any Python client, which
matters when client and servers share 2 cores. Its Lua script sets the POST body
and headers (cookies, CSRF) once, and prints the summary and latency percentiles
as one JSON line at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness import load, loadgen

#: The latency percentiles reported (and plotted).
PERCENTILES = (
    1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97, 98, 99, 99.5, 99.9, 99.99,
)  # fmt: skip
MARKER = "PERFJSON "

LUA = """\
wrk.method = "POST"
wrk.body = {body}
{headers}
local percentiles = {{{percentiles}}}

done = function(summary, latency, requests)
    local parts = {{}}
    for _, p in ipairs(percentiles) do
        parts[#parts + 1] = string.format('"%s":%d', p, latency:percentile(tonumber(p)))
    end
    local e = summary.errors
    io.write(string.format(
        '{marker}{{"requests":%d,"duration_us":%d,"errors":{{"connect":%d,"read":%d,' ..
        '"write":%d,"status":%d,"timeout":%d}},"latency_us":{{%s}},"mean_us":%.1f,"max_us":%d}}\\n',
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        table.concat(parts, ","), latency.mean, latency.max))
end
"""


@dataclass
class Throughput:
    """Small-request throughput and latency of one route, however it was measured."""

    requests: int
    duration: float
    errors: dict[str, int]
    percentiles_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        return {
            "rps": round(self.rps, 1),
            "requests": self.requests,
            "duration_s": round(self.duration, 3),
            "errors": self.errors,
            "p50_ms": round(self.percentiles_ms.get("50", float("nan")), 3),
            "p99_ms": round(self.percentiles_ms.get("99", float("nan")), 3),
            "percentiles_ms": {k: round(v, 3) for k, v in self.percentiles_ms.items()},
        }


def find_wrk() -> str | None:
    return shutil.which("wrk")


def wrk_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    found = re.search(r"wrk (\S+)", result.stdout + result.stderr)
    return found.group(1) if found else "unknown"


def lua_script(body: bytes, headers: tuple[tuple[str, str], ...]) -> str:
    lines = [f"wrk.headers[{_lua(name)}] = {_lua(value)}" for name, value in headers]
    return LUA.format(
        body=_lua(body.decode()),
        headers="\n".join(lines),
        percentiles=", ".join(_lua(_key(p)) for p in PERCENTILES),
        marker=MARKER,
    )


def _key(p: float) -> str:
    return f"{p:g}"


def _lua(text: str) -> str:
    """A Lua string literal (the values are ASCII: JSON, cookies, tokens)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def run_wrk(
    binary: str,
    url: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    threads: int = 2,
    timeout: float = 10.0,
) -> Throughput:
    argv = [
        binary,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={round(timeout)}s",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + timeout + 30, check=False
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith(MARKER)), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    data = json.loads(line[len(MARKER) :])
    errors = {k: v for k, v in data["errors"].items() if v}
    return Throughput(
        requests=data["requests"] - data["errors"]["status"],
        duration=data["duration_us"] / 1e6,
        errors=errors,
        percentiles_ms={k: v / 1000 for k, v in data["latency_us"].items()},
    )


def measure(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    *,
    wrk: str | None,
    connections: int,
    duration: float,
    warmup: float,
) -> Throughput:
    """Throughput and latency at ``connections`` concurrency, after a warm-up."""
    headers = (("Content-Type", "application/json"), *headers)
    if wrk is not None:
        # A private temporary directory: the script holds cookies or the shared secret.
        with tempfile.TemporaryDirectory(prefix="perf-wrk-") as work_dir:
            script = Path(work_dir) / "post.lua"
            script.write_text(lua_script(body, headers), encoding="utf-8")
            url = f"http://{host}:{port}{path}"
            run_wrk(wrk, url, script, connections=connections, duration=warmup)
            return run_wrk(wrk, url, script, connections=connections, duration=duration)
    raw = loadgen.build_request("POST", path, host=f"{host}:{port}", headers=headers, body=body)
    result = loadgen.run(
        load.closed_loop(host, port, raw, concurrency=connections, duration=duration, warmup=warmup)
    )
    errors = dict(result.errors)
    if result.non_200:
        errors["status"] = result.non_200
    return Throughput(
        requests=result.statuses.get(200, 0),
        duration=duration,
        errors=errors,
        percentiles_ms={
            _key(p): loadgen.percentile(result.latencies, p) * 1000 for p in PERCENTILES
        },
    )
