"""An OpenAI-compatible fake LLM with deterministic, streamable answers and a control API."""

from fakes.llm.app import create_app

__all__ = ["create_app"]
