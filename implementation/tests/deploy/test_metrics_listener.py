"""deploy/metrics.py: where the metrics are served, from the environment."""

from __future__ import annotations

import socket

import httpx
import pytest

from deploy import metrics


def test_no_port_means_no_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert metrics.Listener.from_environ() is None
    assert metrics.serve(None) is None


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_a_port_that_is_not_one_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    monkeypatch.setenv("METRICS_PORT", port)
    with pytest.raises(ValueError, match="METRICS_PORT"):
        metrics.Listener.from_environ()


def test_the_listener_serves_the_text_format_and_a_taken_port_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_DIR, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = metrics.Listener("127.0.0.1", port)
    server = metrics.serve(listener)
    assert server is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5)
        assert response.status_code == 200
        assert "# TYPE" in response.text
        # A second worker on the same port (uvicorn --workers 2) keeps running, says why.
        assert metrics.serve(listener) is None
        assert "gunicorn" in caplog.text
    finally:
        server.close()
