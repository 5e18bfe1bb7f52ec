from __future__ import annotations

from django.urls import path

from apps.quiz import async_views

app_name = "quiz"

urlpatterns = [
    path("generate/", async_views.generate, name="generate"),
]
