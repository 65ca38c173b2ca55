"""The learn config: opt-in per group, section defaults, errors that name file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thrifty.compose import build
from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.learn.layer import LearningLayer
from thrifty.learn.settings import parse_settings


def config(tmp_path: Path, learn: Any = None, section: Any = None) -> Any:
    group: dict[str, Any] = {"name": "m", "deployments": [{"provider": "fake", "model": "x"}]}
    if learn is not None:
        group["learn"] = learn
    data: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path)},
        "models": [group, {"name": "plain", "deployments": [{"provider": "fake", "model": "y"}]}],
    }
    if section is not None:
        data["learn"] = section
    return parse_config(data, source="thrifty.yaml")


def test_only_groups_that_opt_in_are_wrapped(tmp_path: Path) -> None:
    stack = build(config(tmp_path, learn=True, section={"min_samples": 20}))
    layer = stack.backends["m"]
    assert isinstance(layer, LearningLayer)
    assert layer.settings.min_samples == 20 and layer.settings.path == str(tmp_path / "learn.sqlite3")
    assert not isinstance(stack.backends["plain"], LearningLayer)
    assert not any(isinstance(b, LearningLayer) for b in build(config(tmp_path)).backends.values())


def test_a_group_mapping_overrides_the_section(tmp_path: Path) -> None:
    cfg = config(tmp_path, learn={"knowledge": False, "max_share": 0.2}, section={"max_share": 0.4})
    settings = parse_settings(cfg, cfg.models[0])
    assert settings.enabled and settings.knowledge == "off" and settings.max_share == 0.2
    off = config(tmp_path, learn=False)
    assert not parse_settings(off, off.models[0]).enabled


@pytest.mark.parametrize(
    ("learn", "section", "where"),
    [
        ({"min_sample": 3}, None, "models[0].learn.min_sample"),
        ({"knowledge": "maybe"}, None, "models[0].learn.knowledge"),
        ("yes", None, "models[0].learn"),
        (True, {"max_share": 2}, "learn.max_share"),
        (True, [1], "learn"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, learn: Any, section: Any, where: str) -> None:
    cfg = config(tmp_path, learn=learn, section=section)
    with pytest.raises(ConfigError) as caught:
        parse_settings(cfg, cfg.models[0])
    assert f"thrifty.yaml: {where}:" in caught.value.message
