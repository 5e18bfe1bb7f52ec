"""The gateway under Django, by layer (asgi, auth, proxy, upstream), and its route table."""
