"""What an operator reads of each request: one structured log line (OPS-LOG-1).

``exchange.py`` holds what is known of the request in flight (a context variable the
layers below fill in: the user once authenticated, the service's status, how a stream
ended); ``observe.py`` is the ASGI layer that opens it, measures what is sent and
writes the line when the answer is done; ``logformat.py`` renders log records as text
or, with LOG_FORMAT=json, as one JSON object a line.
"""
