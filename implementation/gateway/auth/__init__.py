"""Who the request is for: the session check of the fast path and the views' guards."""
