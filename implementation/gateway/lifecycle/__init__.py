"""A gateway process's life as its supervisor sees it: probes, and draining on SIGTERM.

Liveness and readiness are answered here, before the session and CSRF machinery
(probes.py, readiness.py); draining.py hooks SIGTERM so readiness fails at once and
open streams end cleanly within GATEWAY_DRAIN_TIMEOUT.
"""
