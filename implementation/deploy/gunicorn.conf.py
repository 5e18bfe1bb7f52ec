"""gunicorn settings shared by the gateway and the service (README.md, "Deploying").

    gunicorn lamla.asgi:application -c deploy/gunicorn.conf.py --bind 0.0.0.0:8000
    gunicorn fastapi_service.main:app -c deploy/gunicorn.conf.py --bind 10.0.0.5:8001

Each value may be overridden on the command line or in GUNICORN_CMD_ARGS.
"""

import os

worker_class = "deploy.worker.Worker"
# One worker per core: each runs an event loop that carries ~1,000 streams.
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
# Idle keep-alive of client connections (nginx's upstream keepalive, or the gateway's
# pool): longer than any client keeps an idle connection, so the client closes first
# and never reuses a connection the server is closing (RFC 9112 9.6). The gateway's
# SERVICE_KEEPALIVE_EXPIRY and nginx's keepalive_timeout stay below it.
keepalive = 75
# A TERM gives a worker this long, then it is killed. The gateway's own drain ends its
# open streams cleanly before (GATEWAY_DRAIN_TIMEOUT, 20 s by default: keep it below).
graceful_timeout = 30
# A worker that stops answering gunicorn's heartbeat this long is killed and replaced.
timeout = 30
