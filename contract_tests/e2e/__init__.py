"""The whole chain: gateway -> service -> fake LLM."""
