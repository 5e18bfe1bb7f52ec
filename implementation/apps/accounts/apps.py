from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Session login for the browser: csrf, login, logout, me."""

    name = "apps.accounts"
    label = "accounts"
