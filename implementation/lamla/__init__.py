"""The lamla gateway project: Django settings, URLs and the ASGI/WSGI entry points."""
