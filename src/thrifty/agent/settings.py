"""The ``agent:`` section of the config file: defaults for ``thrifty agent`` and run_agent.

agent:
  model: smart            # planner, joiner and llm tool (default: the first model)
  cap: 4                  # most tools running at once (default: no cap)
  max_replans: 2
  planner_timeout_s: 120
  workspace: ./notes      # the only folder read_file / search_files may read
  http_allow: [docs.python.org, "*.wikipedia.org"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config

_KEYS = {"model", "cap", "max_replans", "planner_timeout_s", "workspace", "http_allow"}


@dataclass(frozen=True, slots=True)
class AgentSettings:
    model: str | None = None
    cap: int | None = None
    max_replans: int = 2
    planner_timeout_s: float = 120.0
    workspace: str = "."
    http_allow: tuple[str, ...] = ()


def agent_settings(config: Config) -> AgentSettings:
    """The checked ``agent`` section; ConfigError names the file and key of any problem."""
    raw = config.sections.get("agent")
    where = config.where("agent")
    if raw is None:
        return AgentSettings()
    if not isinstance(raw, Mapping):
        raise where.error("must be a mapping")
    for key in raw:
        if key not in _KEYS:
            raise (where / str(key)).error(f"unknown key (known: {', '.join(sorted(_KEYS))})")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise (where / "model").error("must be a model name")
    cap = raw.get("cap")
    if cap is not None and (not _is_int(cap) or cap < 1):
        raise (where / "cap").error("must be a whole number >= 1")
    replans = raw.get("max_replans", 2)
    if not _is_int(replans) or replans < 0:
        raise (where / "max_replans").error("must be a whole number >= 0")
    timeout = raw.get("planner_timeout_s", 120.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise (where / "planner_timeout_s").error("must be a positive number of seconds")
    workspace = raw.get("workspace", ".")
    if not isinstance(workspace, str) or not workspace:
        raise (where / "workspace").error("must be a folder path")
    allow = raw.get("http_allow", [])
    if not isinstance(allow, list) or not all(isinstance(h, str) and h for h in allow):
        raise (where / "http_allow").error("must be a list of host names (host, host:port or *.domain)")
    return AgentSettings(model, cap, int(replans), float(timeout), workspace, tuple(allow))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
