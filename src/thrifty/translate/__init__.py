"""Other APIs' request and response shapes, translated to and from thrifty's chat request; no I/O.

Each module turns one API's request body into a chat-completions body, and a
chat completion (or its stream of chunks) back into that API's answer. The HTTP
handlers in :mod:`thrifty.server` call them around the gateway.
"""
