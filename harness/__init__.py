"""The harness: reads a plug file, starts real processes on loopback, reports per requirement."""
