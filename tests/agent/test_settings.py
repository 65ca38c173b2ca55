"""The agent: config section, and the CLI reading it under its flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thrifty.agent.cli import agent_main
from thrifty.agent.settings import AgentSettings, agent_settings
from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.testing import FakeBackend

MODELS = [{"name": "smart", "deployments": [{"provider": "local", "model": "smollm2"}]}]


def test_settings_are_read_and_checked() -> None:
    data = {"models": MODELS, "agent": {"cap": 3, "http_allow": ["example.org"], "workspace": "notes"}}
    settings = agent_settings(parse_config(data, source="t.yaml"))
    assert settings == AgentSettings(cap=3, http_allow=("example.org",), workspace="notes")
    assert agent_settings(parse_config({"models": MODELS})) == AgentSettings()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"cap": 0}, "agent.cap"),
        ({"cap": True}, "agent.cap"),
        ({"max_replans": -1}, "agent.max_replans"),
        ({"planner_timeout_s": "soon"}, "agent.planner_timeout_s"),
        ({"http_allow": "example.org"}, "agent.http_allow"),
        ({"capp": 2}, "agent.capp"),
    ],
)
def test_bad_settings_name_file_and_key(section: dict[str, Any], key: str) -> None:
    config = parse_config({"models": MODELS, "agent": section}, source="t.yaml")
    with pytest.raises(ConfigError, match=f"t.yaml: {key}: "):
        agent_settings(config)


def test_cli_uses_the_config_section_and_flags_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "thrifty.yaml"
    config.write_text(
        "models:\n  - name: smart\n    deployments: [{provider: local, model: smollm2}]\n"
        "agent:\n  max_replans: 0\n  cap: 2\n"
    )
    seen: dict[str, Any] = {}

    def answer(request: Any) -> str:
        seen["model"] = request.model
        if "planning calls to tools" in request.messages[0]["content"]:
            return '1. calc("3 * 3")\n2. join()\n'
        return "Action: Finish(9)"

    def factory(args: Any) -> FakeBackend:
        return FakeBackend(answer)

    code = agent_main(["q", "--config", str(config), "--no-live"], backend_factory=factory)
    assert code == 0 and capsys.readouterr().out.strip() == "9" and seen["model"] == "smart"
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: {cap: 0}\n")
    assert agent_main(["q", "--config", str(bad)], backend_factory=factory) == 2
    assert "agent.cap" in capsys.readouterr().err


def test_cli_talks_to_a_gateway_over_http(free_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import threading

    from thrifty.fakeupstream import FakeUpstream

    # The "gateway" answers every prompt with the same text: no plan lines, then a final answer.
    up = FakeUpstream(port=free_port, text="Action: Finish(done)", chunks=1)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        loop.run_until_complete(up.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        code = agent_main(["q", "--url", up.root, "--model", "m", "--json"])
    finally:
        asyncio.run_coroutine_threadsafe(up.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    out = capsys.readouterr().out
    assert code == 0 and '"answer": "done"' in out
    assert up.stats.requests >= 2  # the planner and the joiner both went over HTTP
