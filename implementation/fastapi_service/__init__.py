"""The internal AI service: trusts only the shared secret, talks to an OpenAI-compatible LLM."""
