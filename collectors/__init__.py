"""The collectors stage: the HTTP receiver and the OTLP mapping (the Python SDK is its own distribution, sdk/)."""
