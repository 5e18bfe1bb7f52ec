"""From the browser's request to the service and back: bodies, headers, forwarding, relaying."""
