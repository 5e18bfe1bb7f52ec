"""``manage.py ensure_user NAME --password PW``: create the user or reset its password.

Idempotent, so harnesses and deploy scripts can run it on every start.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Create a user, or set the password of an existing one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> None:
        if not username or not password:
            raise CommandError("username and password must not be empty")
        user_model = get_user_model()
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}
        )
        user.set_password(password)
        user.is_active = True
        user.save()
        # Never echo the password.
        self.stdout.write(f"{'created' if created else 'updated'} user {username}")
