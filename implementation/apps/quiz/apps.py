from __future__ import annotations

from django.apps import AppConfig


class QuizConfig(AppConfig):
    """Quiz generation, proxied to the service's /quiz/ route."""

    name = "apps.quiz"
    label = "quiz"
