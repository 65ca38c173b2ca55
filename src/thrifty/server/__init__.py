"""The HTTP server: an OpenAI-compatible Starlette app over a Gateway."""
