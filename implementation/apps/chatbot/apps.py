from __future__ import annotations

from django.apps import AppConfig


class ChatbotConfig(AppConfig):
    """Chat endpoints, proxied to the service's /chatbot/ routes."""

    name = "apps.chatbot"
    label = "chatbot"
