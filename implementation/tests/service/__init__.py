"""Unit tests of the internal FastAPI service (a package, so module names stay unique)."""
