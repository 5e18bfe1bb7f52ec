"""The old sync views, kept at /api/legacy/ for backward compatibility and as a baseline."""

from __future__ import annotations

from django.urls import path

from apps.chatbot import views

app_name = "legacy"

urlpatterns = [
    path("chat/", views.chat, name="chat"),
    path("chat/stream/", views.chat_stream, name="chat-stream"),
]
