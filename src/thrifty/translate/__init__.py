"""Pure translations between the other OpenAI request shapes and chat completions.

Each module turns one API's request body into a chat-completions body, and a
chat completion (or its stream of chunks) back into that API's answer. No I/O:
the HTTP handlers in :mod:`thrifty.server` call them around the gateway.
"""
