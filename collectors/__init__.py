"""The collectors stage: the Python SDK, the HTTP receiver and the OTLP mapping."""
