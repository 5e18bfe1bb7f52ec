from __future__ import annotations

from django.urls import path

from apps.chatbot import async_views

app_name = "chatbot"

urlpatterns = [
    path("", async_views.chat, name="chat"),
    path("stream/", async_views.chat_stream, name="chat-stream"),
    path("file/", async_views.chat_file, name="chat-file"),
]
