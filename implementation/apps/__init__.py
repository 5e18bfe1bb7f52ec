"""Django apps of the gateway."""
