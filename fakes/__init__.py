"""Stand-ins for the LLM and the internal service, programmed through /_control/."""
