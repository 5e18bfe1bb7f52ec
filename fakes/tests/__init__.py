"""Self-tests of the fakes."""
