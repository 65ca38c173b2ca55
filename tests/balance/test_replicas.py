"""Supervised replica processes: started, restarted on crash, balanced without losing requests."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable

import pytest

from thrifty import providers
from thrifty.balance import Balancer, FakeClock, build_group
from thrifty.balance.replicas import (
    ReplicaSpec,
    ReplicaSupervisor,
    SupervisedGroup,
    replica_config,
    spec_from_options,
)
from thrifty.config import ModelGroup, Where, default_config, parse_config
from thrifty.errors import ConfigError
from thrifty.testing import chat

FAKE_CHILD = (
    sys.executable,
    "-m",
    "thrifty.fakeupstream",
    "--port",
    "{port}",
    "--name",
    "r{index}",
    "--text",
    "from-replica",
)


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


def test_backoff_grows_with_quick_crashes_and_resets_after_stable_uptime() -> None:
    supervisor = ReplicaSupervisor(
        ReplicaSpec(replicas=1, ports=(1,), restart_backoff=0.5, restart_backoff_max=4, stable_after=30),
        clock=FakeClock(),
    )
    replica = supervisor.replicas[0]
    delays = []
    for _ in range(5):
        delays.append(supervisor.backoff(replica, uptime=1))
        replica.restarts += 1
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert supervisor.backoff(replica, uptime=60) == 0.5


def test_deployments_point_at_each_replica() -> None:
    supervisor = ReplicaSupervisor(
        ReplicaSpec(group="local", model="smollm2", replicas=2, ports=(9001, 9002))
    )
    deps = supervisor.deployments()
    assert [d.api_base for d in deps] == ["http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"]
    assert {d.provider for d in deps} == {"openai"} and deps[0].options["health_url"].endswith("/health")


def test_replica_config_rewrites_local_groups_only() -> None:
    base = parse_config(
        {
            "models": [
                {"name": "smollm2", "deployments": [{"provider": "local", "model": "smollm2"}]},
                {"name": "cloud", "deployments": [{"model": "openai/gpt-4o-mini", "api_key": "k"}]},
            ]
        },
        source="c.yaml",
    )
    config = replica_config(base, 3)
    local, cloud = config.models
    assert len(local.deployments) == 3 and {d.provider for d in local.deployments} == {"openai"}
    assert local.options["replicas"]["count"] == 3
    assert cloud == base.models[1]
    spec = spec_from_options(local, Where("c.yaml", "models[name=smollm2].replicas"))
    assert "--config" in spec.command and spec.child_config is not None
    assert spec.health_path == "/ready" and local.deployments[0].options["health_url"].endswith("/ready")
    assert replica_config(default_config(), 2).models[0].options["replicas"]["count"] == 2


def test_bad_replicas_option_names_the_key() -> None:
    group = ModelGroup(name="g", deployments=(), options={"replicas": {"count": 0}})
    with pytest.raises(ConfigError, match=r"c.yaml: models\[name=g\].replicas.count: must be a positive"):
        spec_from_options(group, Where("c.yaml", "models[name=g].replicas"))


async def test_supervisor_restarts_a_killed_replica() -> None:
    spec = ReplicaSpec(replicas=2, command=FAKE_CHILD, restart_backoff=0.05, ready_timeout=30)
    supervisor = ReplicaSupervisor(spec)
    await supervisor.start()
    try:
        assert [r.state for r in supervisor.replicas] == ["running", "running"]
        old_pid = supervisor.replicas[0].process.pid  # type: ignore[union-attr]
        supervisor.kill(0)
        await wait_for(
            lambda: supervisor.replicas[0].restarts == 1 and supervisor.replicas[0].state == "running"
        )
        assert supervisor.replicas[0].process.pid != old_pid  # type: ignore[union-attr]
        assert supervisor.replicas[0].last_exit is not None
    finally:
        await supervisor.aclose()
    assert all(r.process and r.process.returncode is not None for r in supervisor.replicas)


async def test_group_over_replicas_loses_no_request_when_one_is_killed() -> None:
    base = parse_config(
        {"models": [{"name": "local", "deployments": [{"provider": "local", "model": "m"}], "retries": 3}]},
        source="c.yaml",
    )
    config = replica_config(base, 2)
    group = config.models[0]
    options = dict(group.options)
    options["replicas"] = {**options["replicas"], "command": list(FAKE_CHILD)}
    group = ModelGroup(name=group.name, deployments=group.deployments, options=options)
    built = build_group(group, [providers.build(d) for d in group.deployments], config)
    assert isinstance(built, SupervisedGroup) and isinstance(built.inner, Balancer)
    await built.start()
    try:
        answers = [await built.complete(chat("hi")) for _ in range(4)]
        built.supervisor.kill(1)
        await built.supervisor.replicas[1].process.wait()  # type: ignore[union-attr]
        answers += [await built.complete(chat("hi")) for _ in range(20)]
    finally:
        await built.aclose()
    assert len(answers) == 24 and all(a.text.startswith("from-replica") for a in answers)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_replicas_die_with_a_killed_supervisor(tmp_path: object) -> None:
    import os
    import signal
    import subprocess
    import time

    script = (
        "import asyncio, sys\n"
        "from thrifty.balance.replicas import ReplicaSpec, ReplicaSupervisor\n"
        f"CHILD = {FAKE_CHILD!r}\n"
        "async def main():\n"
        "    s = ReplicaSupervisor(ReplicaSpec(replicas=1, command=CHILD, ready_timeout=30))\n"
        "    await s.start()\n"
        "    print(s.replicas[0].process.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    for _ in range(200):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                return  # exited; a zombie waiting for init to reap it
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the replica outlived its supervisor")


async def test_each_thrifty_child_gets_its_own_config_and_data_dir() -> None:
    import yaml

    config = replica_config(parse_config({"server": {"data_dir": "/srv/thrifty"}}, source="c.yaml"), 2)
    group = config.models[0]
    spec = spec_from_options(group, Where("c.yaml", "models[name=smollm2].replicas"))
    # children that only sleep: the point is the config file each is handed
    sleeper = (sys.executable, "-c", "import time; time.sleep(30)", "{config}")
    spec = dataclasses.replace(spec, command=sleeper, ready_timeout=0.01)
    supervisor = ReplicaSupervisor(spec)
    await supervisor.start()
    try:
        paths = [supervisor._argv(r)[-1] for r in supervisor.replicas]
        dirs = []
        for path in paths:
            with open(path) as f:
                dirs.append(yaml.safe_load(f)["server"]["data_dir"])
    finally:
        await supervisor.aclose()
    assert dirs == ["/srv/thrifty/replicas/smollm2-0", "/srv/thrifty/replicas/smollm2-1"]
