from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared gateway plumbing; ready() only registers the system checks (no I/O)."""

    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from apps.core import checks

        checks.register()
