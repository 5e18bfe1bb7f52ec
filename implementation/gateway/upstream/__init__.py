"""The connection to the service: the pooled client, its transport and request signing."""
