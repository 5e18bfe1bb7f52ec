from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete


class CoreConfig(AppConfig):
    """Shared gateway plumbing; ready() only registers checks and receivers (no I/O)."""

    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from gateway import checks
        from gateway.auth import session_users
        from gateway.state.shared import shared_state

        checks.register()
        # The fast path's session cache forgets a session the moment it ends here.
        user_logged_out.connect(
            session_users.evict_logged_out, dispatch_uid="gateway.auth.session_users.logout"
        )
        shared = shared_state()
        if shared is not None:
            # A revocation may be missed while Redis is away: trust no cached session then.
            shared.link.on_outage(session_users.session_users.clear)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        if hasattr(store, "get_model_class"):  # database-backed sessions
            post_delete.connect(
                session_users.evict_deleted_session,
                sender=store.get_model_class(),
                dispatch_uid="gateway.auth.session_users.deleted",
            )
