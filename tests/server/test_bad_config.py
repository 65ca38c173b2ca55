"""``thrifty serve`` with a bad capability section: one line naming file and key, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = "models:\n  - name: a\n    deployments: [{model: fake/a}]\n"


@pytest.mark.parametrize(
    ("routing", "key"),
    [
        ("routing:\n  tiers:\n    - {name: fast, model: nope}\n", "routing.tiers[0].model"),
        ("routing: [1, 2]\n", "routing"),
        (
            "routing:\n  tiers: [{name: fast, model: a}]\n  routers: [{name: r, policy: psychic}]\n",
            "routing.routers[0].policy",
        ),
    ],
)
def test_a_bad_routing_section_prints_one_line_naming_file_and_key(
    tmp_path: Path, free_port: int, routing: str, key: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(MODELS + routing)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "thrifty", "serve", "--config", str(config), "--port", str(free_port)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"thrifty: invalid config: {config}: {key}:"), lines[0]
