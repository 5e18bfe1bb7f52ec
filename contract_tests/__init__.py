"""Black-box contract suites for the async proxy pattern (see spec/requirements.md)."""
