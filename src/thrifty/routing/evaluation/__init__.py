"""Offline evaluation of the routing policies (``thrifty route eval``)."""
