"""Teams, virtual keys, budgets and rate limits, shared across gateway replicas.

- :mod:`.policy`: budgets, limits and allow-lists as data (parsing, no I/O);
- :mod:`.store`: keys, teams and spend in SQLite or PostgreSQL;
- :mod:`.counters`: rate windows, budget reservations and in-flight slots, in Redis or in process;
- :mod:`.service`: identify a caller, admit a request, settle what it used.
"""
