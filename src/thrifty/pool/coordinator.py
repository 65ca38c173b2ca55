"""The pool's shared state in Redis Streams, and the one object every gateway replica runs.

Keys (``P`` is ``pool.prefix``)::

    P:tokens        hash  token id -> {id, name, digest, created}      join tokens (admin API)
    P:digests       hash  sha256(token) -> token id
    P:workers       hash  worker id -> {name, capabilities, joined}    a worker's id is its token's
    P:seen P:state P:load P:active P:power   hashes by worker id
    P:q:<worker>    stream, consumer group "g": the tasks sent to that worker, and only those
    P:t:<task>      hash  worker, lease, reply, stream, started, done, body, need
    P:r:<replica>   stream: results for the tasks a replica waits on
    P:parked        stream: tasks no worker can take now (picked up when one can)
    P:stats P:events   counters; the recent joins, losses and migrations

A task is sent (``DISPATCH``) to the worker the matcher picks; the worker's lease
call reads its own stream with ``XREADGROUP``; each result is accepted by
``RESULT`` only from the worker holding the lease and only until the task is
done, and is relayed to the replica waiting on it. Every replica sweeps: a
worker silent for ``heartbeat + grace`` is marked gone and its stream's entries
(pending ones with ``XAUTOCLAIM``, undelivered ones by reading them) move to
another worker (``REASSIGN``), unless the task is a stream that already sent
tokens: that one ends with an error event. The Lua scripts make each step
atomic, so two replicas sweeping at once move a task once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import orjson

from ..errors import (
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    PermissionDenied,
    ThriftyError,
    UpstreamConnectionError,
)
from .matcher import Need, WorkerView, choose, refusal
from .protocol import Capabilities, Result, parse_capabilities
from .settings import PoolSettings

log = logging.getLogger("thrifty.pool")

GROUP = "g"
FORGET_AFTER_S = 600.0  # a gone worker stays listed this long
AFFINITY_SIZE = 4096

# KEYS: task, queue, load, state, stats   ARGV: worker, lease, reply, stream, body, need, task id
_DISPATCH = """
if redis.call('HGET', KEYS[4], ARGV[1]) ~= 'active' then return 0 end
redis.call('HSET', KEYS[1], 'worker', ARGV[1], 'lease', ARGV[2], 'reply', ARGV[3],
  'stream', ARGV[4], 'body', ARGV[5], 'need', ARGV[6], 'started', '0', 'done', '0')
redis.call('PEXPIRE', KEYS[1], 3600000)
local id = redis.call('XADD', KEYS[2], '*', 'task', ARGV[7])
redis.call('HSET', KEYS[1], 'entry', id)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], 'dispatched', 1)
return 1
"""

# KEYS: task   ARGV: worker, lease, kind, data, done, started, task id, prefix
_RESULT = """
local w = redis.call('HGET', KEYS[1], 'worker')
if not w then return -1 end
if w ~= ARGV[1] or redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return -2 end
if redis.call('HGET', KEYS[1], 'done') == '1' then return -3 end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1')
  redis.call('PEXPIRE', KEYS[1], 60000)
  redis.call('HINCRBY', ARGV[8] .. ':load', w, -1)
  local q = ARGV[8] .. ':q:' .. w
  local entry = redis.call('HGET', KEYS[1], 'entry')
  redis.call('XACK', q, 'g', entry)
  redis.call('XDEL', q, entry)
end
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'started', '1') end
local reply = redis.call('HGET', KEYS[1], 'reply')
redis.call('XADD', reply, 'MAXLEN', '~', 10000, '*', 'task', ARGV[7], 'kind', ARGV[3], 'data', ARGV[4])
redis.call('PEXPIRE', reply, 3600000)
return 1
"""

# KEYS: task   ARGV: from worker ('' = parked), to worker ('' = none), new lease, task id, prefix, event
# -> 0 not (or no longer) from's task; 1 moved; 2 ended (a stream already under way); 3 parked
_REASSIGN = """
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'done') == '1' then return 0 end
local p = ARGV[5]
local reply = redis.call('HGET', KEYS[1], 'reply')
if ARGV[1] ~= '' then redis.call('HINCRBY', p .. ':load', ARGV[1], -1) end
if redis.call('HGET', KEYS[1], 'stream') == '1' and redis.call('HGET', KEYS[1], 'started') == '1' then
  redis.call('HSET', KEYS[1], 'done', '1')
  redis.call('PEXPIRE', KEYS[1], 60000)
  redis.call('HINCRBY', p .. ':stats', 'lost', 1)
  redis.call('XADD', reply, 'MAXLEN', '~', 10000, '*', 'task', ARGV[4], 'kind', 'lost', 'data', ARGV[6])
  return 2
end
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'worker', '')
  if ARGV[1] ~= '' then redis.call('XADD', p .. ':parked', '*', 'task', ARGV[4]) end
  redis.call('HINCRBY', p .. ':stats', 'parked', 1)
  return 3
end
redis.call('HSET', KEYS[1], 'worker', ARGV[2], 'lease', ARGV[3])
local id = redis.call('XADD', p .. ':q:' .. ARGV[2], '*', 'task', ARGV[4])
redis.call('HSET', KEYS[1], 'entry', id)
redis.call('HINCRBY', p .. ':load', ARGV[2], 1)
redis.call('HINCRBY', p .. ':stats', 'migrated', 1)
redis.call('XADD', reply, 'MAXLEN', '~', 10000, '*', 'task', ARGV[4], 'kind', 'migrated', 'data', ARGV[6])
return 1
"""

# KEYS: task   ARGV: prefix
_CANCEL = """
if redis.call('HGET', KEYS[1], 'done') ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'done', '1')
redis.call('PEXPIRE', KEYS[1], 60000)
local w = redis.call('HGET', KEYS[1], 'worker')
if w and w ~= '' then redis.call('HINCRBY', ARGV[1] .. ':load', w, -1) end
return 1
"""

# KEYS: state, seen   ARGV: worker, now, silence, replica start -> 1 when this call marked it gone
_MARK_GONE = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if state ~= 'active' and state ~= 'draining' then return 0 end
local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) - math.max(seen, tonumber(ARGV[4])) <= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'gone')
return 1
"""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Pool:
    """One gateway replica's handle on the shared pool: dispatch, wait, sweep, admin."""

    def __init__(self, settings: PoolSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.clock = clock
        self.replica = secrets.token_hex(6)
        self.reply_key = self.key("r", self.replica)
        self.redis: Any = None
        self.blocking: Any = None
        self.workers: dict[str, WorkerView] = {}
        self.waiting: dict[str, asyncio.Queue[tuple[str, Any]]] = {}
        self.affinity: OrderedDict[str, str] = OrderedDict()
        self.tokens: dict[str, tuple[str | None, float]] = {}  # digest -> (worker id, checked at)
        self.counts = {"dispatched": 0, "migrated": 0, "lost": 0, "rejected": 0}
        self.started_at = 0.0
        self._loops: list[asyncio.Task[None]] = []
        self._scripts: dict[str, Any] = {}
        self._starting: asyncio.Lock | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, load the scripts, read the registry, start the reply reader and the sweeper."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.redis is not None:
                return
            import redis.asyncio as aioredis

            url = self.settings.redis_url
            self.redis = aioredis.from_url(url, decode_responses=True, socket_timeout=5.0)
            # long polls (a worker's lease, the reply reader) block longer than any plain call may
            self.blocking = aioredis.from_url(
                url, decode_responses=True, socket_timeout=self.settings.lease_wait + 5.0
            )
            for name, lua in (
                ("dispatch", _DISPATCH),
                ("result", _RESULT),
                ("reassign", _REASSIGN),
                ("cancel", _CANCEL),
                ("mark_gone", _MARK_GONE),
            ):
                self._scripts[name] = self.redis.register_script(lua)
            self.started_at = self.clock()
            await self.refresh()
            self._loops = [
                asyncio.create_task(self._read_replies(), name="pool-replies"),
                asyncio.create_task(self._sweep_forever(), name="pool-sweep"),
            ]

    async def aclose(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        self._loops = []
        if self.redis is not None:
            await self.redis.aclose()
            await self.blocking.aclose()
            self.redis = self.blocking = None

    # -- join tokens (admin API) ---------------------------------------------------------

    async def create_token(self, name: str) -> dict[str, Any]:
        token_id = "wk_" + secrets.token_hex(6)
        secret = "tpw_" + secrets.token_urlsafe(24)
        record = {"id": token_id, "name": name, "created": int(self.clock())}
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key("tokens"), token_id, orjson.dumps({**record, "digest": digest(secret)}).decode())
        pipe.hset(self.key("digests"), digest(secret), token_id)
        await pipe.execute()
        return {**record, "token": secret}

    async def list_tokens(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.key("tokens"))
        out = []
        for value in raw.values():
            record = orjson.loads(value)
            record.pop("digest", None)
            out.append(record)
        return sorted(out, key=lambda r: (r["created"], r["id"]))

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        raw = await self.redis.hget(self.key("tokens"), token_id)
        if raw is None:
            raise NotFound(f"No pool token {token_id!r}.")
        record = orjson.loads(raw)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.key("tokens"), token_id)
        pipe.hdel(self.key("digests"), record["digest"])
        pipe.hset(self.key("state"), token_id, "gone")
        await pipe.execute()
        self.tokens = {d: v for d, v in self.tokens.items() if v[0] != token_id}
        await self._event("revoked", worker=token_id)
        await self.refresh()
        await self.reap(token_id)
        return {"id": token_id, "name": record["name"], "revoked": True}

    async def identify(self, token: str) -> str | None:
        """The worker a join token belongs to (cached for a second: revocation shows within it)."""
        key = digest(token)
        now = time.monotonic()
        held = self.tokens.get(key)
        if held is not None and now - held[1] < 1.0:
            return held[0]
        worker = await self.redis.hget(self.key("digests"), key)
        if len(self.tokens) > 10_000:
            self.tokens.clear()
        self.tokens[key] = (worker, now)
        return str(worker) if worker is not None else None

    # -- the worker's side (routes) --------------------------------------------------------

    async def join(self, worker: str, caps: Capabilities) -> dict[str, Any]:
        """A worker (re)joins: it holds nothing now, so whatever its stream holds moves."""
        from redis.exceptions import ResponseError

        name = orjson.loads(await self.redis.hget(self.key("tokens"), worker) or b"{}").get("name", worker)
        record = {"name": name, "capabilities": caps.to_json(), "joined": self.clock()}
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it joined before
            await self.redis.xgroup_create(self.key("q", worker), GROUP, id="0", mkstream=True)
        was = await self.redis.hget(self.key("state"), worker)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key("workers"), worker, orjson.dumps(record).decode())
        pipe.hset(self.key("seen"), worker, self.clock())
        pipe.hset(self.key("state"), worker, "active")
        pipe.hset(self.key("power"), worker, orjson.dumps({"power": caps.power, "battery": caps.battery}))
        await pipe.execute()
        await self.refresh()
        if was in ("active", "draining"):  # restarted before it was missed: its old tasks go out again
            await self.reap(worker, allow_self=True)
        # its load starts again from what its stream holds (the counter cannot drift past a rejoin)
        await self.redis.hset(self.key("load"), worker, await self.redis.xlen(self.key("q", worker)))
        await self._event("joined", worker=worker)
        return {
            "worker_id": worker,
            "name": name,
            "heartbeat": self.settings.heartbeat,
            "lease_wait": self.settings.lease_wait,
        }

    async def _state(self, worker: str) -> str:
        state = await self.redis.hget(self.key("state"), worker)
        if state is None or state == "gone":
            raise Rejoin(
                "This worker is not in the pool (it was silent too long, or never joined); join again."
            )
        return str(state)

    async def heartbeat(
        self, worker: str, active: int, power: str | None, battery: float | None
    ) -> dict[str, Any]:
        state = await self._state(worker)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key("seen"), worker, self.clock())
        pipe.hset(self.key("active"), worker, active)
        if power is not None:
            pipe.hset(self.key("power"), worker, orjson.dumps({"power": power, "battery": battery}))
        await pipe.execute()
        return {"state": state}

    async def lease(self, worker: str, wait: float, most: int, held: set[str]) -> dict[str, Any]:
        """Tasks for ``worker``: any it was given but never got, else new ones (waiting up to ``wait``)."""
        state = await self._state(worker)
        await self.redis.hset(self.key("seen"), worker, self.clock())
        if state != "active":
            return {"state": state, "tasks": []}
        queue = self.key("q", worker)
        mine = await self.redis.xreadgroup(GROUP, worker, {queue: "0"}, count=64)
        entries = [e for _, got in mine for e in got if e[1] and e[1].get("task") not in held]
        if not entries:
            block = int(wait * 1000) or None
            got = await self.blocking.xreadgroup(GROUP, worker, {queue: ">"}, count=most, block=block)
            entries = [e for _, batch in got for e in batch]
        tasks = []
        for entry_id, fields in entries[:most]:
            task_id = fields.get("task", "")
            info = await self.redis.hmget(self.key("t", task_id), "worker", "lease", "done", "stream", "body")
            if info[0] != worker or info[2] != "0":  # moved, cancelled or finished meanwhile
                await self.redis.xack(queue, GROUP, entry_id)
                await self.redis.xdel(queue, entry_id)
                continue
            tasks.append(
                {
                    "task_id": task_id,
                    "lease": info[1],
                    "stream": info[3] == "1",
                    "request": orjson.loads(info[4]),
                }
            )
        return {"state": "active", "tasks": tasks}

    async def result(self, worker: str, task_id: str, result: Result) -> None:
        """Relay one result message, if ``worker`` holds the task's lease and it is not done."""
        kind, data = ("done" if result.done else "chunks"), orjson.dumps(result.chunks)
        if result.error is not None:
            kind, data = "error", orjson.dumps(result.error)
        elif result.response is not None:
            kind, data = "response", orjson.dumps(result.response)
        started = "1" if result.chunks else "0"
        done = "1" if result.done else "0"
        code = await self._scripts["result"](
            keys=[self.key("t", task_id)],
            args=[worker, result.lease, kind, data, done, started, task_id, self.prefix],
        )
        if code == -1:
            raise NotFound(f"No pool task {task_id!r} (it finished long ago, or never existed).")
        if code == -2:
            raise PermissionDenied(
                f"This worker does not hold the lease of task {task_id!r}.", code="not_lease_holder"
            )
        if code == -3:
            raise TaskDone(f"Task {task_id!r} is finished or cancelled; stop working on it.")

    async def release(self, worker: str, leave: bool) -> dict[str, Any]:
        """Draining: no new work; what is queued and not yet leased goes elsewhere. ``leave``: gone now."""
        await self._state(worker)
        await self.redis.hset(self.key("state"), worker, "gone" if leave else "draining")
        await self._event("left" if leave else "draining", worker=worker)
        await self.reap(worker, pending=leave)
        await self.refresh()
        return {"state": "gone" if leave else "draining"}

    # -- the gateway's side (the backend) ----------------------------------------------------

    def pick(self, need: Need, exclude: set[str] | frozenset[str] = frozenset()) -> WorkerView | None:
        affinity = self.affinity.get(need.prefix) if need.prefix else None
        return choose(self.workers.values(), need, affinity, exclude)

    async def run(self, body: dict[str, Any], need: Need, stream: bool) -> AsyncIterator[tuple[str, Any]]:
        """Send a task and yield what comes back: ``(kind, data)`` until ``response``, the stream's
        end (``done``), ``error`` or ``lost``; ``migrated`` on the way when its worker changed."""
        if self.redis is None:
            await self.start()
        task_id = secrets.token_hex(10)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.waiting[task_id] = queue
        finished = False
        try:
            worker = await self._dispatch(task_id, body, need, stream)
            yield "assigned", worker
            while True:
                kind, data = await queue.get()
                finished = kind in ("response", "error", "lost", "done")
                yield kind, data
                if finished:
                    return
        finally:
            del self.waiting[task_id]
            if not finished and self.redis is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self._scripts["cancel"](keys=[self.key("t", task_id)], args=[self.prefix])
                    )

    async def _dispatch(self, task_id: str, body: dict[str, Any], need: Need, stream: bool) -> WorkerView:
        from redis.exceptions import RedisError

        payload = orjson.dumps(body)
        need_json = orjson.dumps([need.model, need.prompt_tokens, need.max_tokens, need.prefix])
        tried: set[str] = set()
        for _ in range(3):
            worker = self.pick(need, tried)
            if worker is None:
                await self.refresh()
                worker = self.pick(need, tried)
            if worker is None:
                raise NoDeploymentAvailable(
                    f"Cannot place the request in the pool: {refusal(self.workers.values(), need)}."
                )
            try:
                sent = await self._send(task_id, worker, payload, need_json, stream)
            except RedisError as exc:
                raise UpstreamConnectionError(
                    f"The pool's shared state (Redis) is unreachable: {exc}"
                ) from exc
            if sent:
                self.workers[worker.id] = replace(worker, load=worker.load + 1)
                self.counts["dispatched"] += 1
                if need.prefix:
                    self.affinity[need.prefix] = worker.id
                    self.affinity.move_to_end(need.prefix)
                    if len(self.affinity) > AFFINITY_SIZE:
                        self.affinity.popitem(last=False)
                return worker
            tried.add(worker.id)
        raise NoDeploymentAvailable(
            "Cannot place the request in the pool: the workers left while it was sent."
        )

    async def _send(self, task_id: str, worker: WorkerView, payload: bytes, need: bytes, stream: bool) -> int:
        keys = [self.key("t", task_id), self.key("q", worker.id)]
        keys += [self.key("load"), self.key("state"), self.key("stats")]
        lease = secrets.token_hex(8)
        args = [worker.id, lease, self.reply_key, "1" if stream else "0", payload, need, task_id]
        return int(await self._scripts["dispatch"](keys=keys, args=args))

    async def _read_replies(self) -> None:
        from redis.exceptions import RedisError

        last = "0-0"
        while True:
            try:
                got = await self.blocking.xread({self.reply_key: last}, count=512, block=1000)
            except RedisError as exc:
                log.warning("pool: reading results failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for _, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    queue = self.waiting.get(fields.get("task", ""))
                    if queue is not None:
                        queue.put_nowait((fields["kind"], orjson.loads(fields["data"])))

    # -- the sweep: registry, silent workers, parked tasks -------------------------------------

    async def refresh(self) -> None:
        """Read the workers, their state and load into this replica's view."""
        pipe = self.redis.pipeline(transaction=False)
        for name in ("workers", "state", "load", "power"):
            pipe.hgetall(self.key(name))
        workers, state, load, power = await pipe.execute()
        views: dict[str, WorkerView] = {}
        for worker, raw in workers.items():
            record = orjson.loads(raw)
            try:
                caps = parse_capabilities(record["capabilities"])
            except ThriftyError:
                continue
            live = orjson.loads(power.get(worker) or b"{}")
            if live.get("power"):
                caps = replace(caps, power=live["power"], battery=live.get("battery"))
            views[worker] = WorkerView(
                id=worker,
                name=record.get("name", worker),
                capabilities=caps,
                state=state.get(worker, "gone"),
                load=max(0, int(load.get(worker, 0))),
            )
        self.workers = views

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep)
            try:
                await self.sweep()
            except Exception as exc:  # the sweep must outlive a Redis hiccup
                log.warning("pool: sweep failed: %s", exc)

    async def sweep(self) -> None:
        await self.refresh()
        now = self.clock()
        seen = await self.redis.hgetall(self.key("seen"))
        for worker, view in list(self.workers.items()):
            silent = now - max(float(seen.get(worker, 0)), self.started_at) > self.settings.silence
            if view.state in ("active", "draining") and silent:
                marked = await self._scripts["mark_gone"](
                    keys=[self.key("state"), self.key("seen")],
                    args=[worker, now, self.settings.silence, self.started_at],
                )
                if marked:
                    log.warning("pool: worker %s (%s) went silent; moving its tasks", worker, view.name)
                    await self._event("gone", worker=worker)
                    await self.refresh()
                    await self.reap(worker)
            elif view.state == "gone":
                if await self.redis.xlen(self.key("q", worker)):
                    await self.reap(worker)
                elif now - float(seen.get(worker, 0)) > FORGET_AFTER_S:
                    await self._forget(worker)
        if any(v.state == "active" for v in self.workers.values()):
            await self._unpark()

    async def _forget(self, worker: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name in ("workers", "state", "load", "power", "seen", "active"):
            pipe.hdel(self.key(name), worker)
        pipe.delete(self.key("q", worker))
        await pipe.execute()

    async def reap(self, worker: str, *, pending: bool = True, allow_self: bool = False) -> int:
        """Move the tasks in ``worker``'s stream elsewhere: pending ones (claimed with XAUTOCLAIM)
        when ``pending``, and the ones it never leased. How many moved."""
        from redis.exceptions import ResponseError

        queue = self.key("q", worker)
        reaper = f"reaper:{self.replica}"
        entries: list[tuple[str, dict[str, str]]] = []
        try:
            if pending:
                start = "0-0"
                while True:
                    answer = await self.redis.xautoclaim(queue, GROUP, reaper, 0, start_id=start, count=100)
                    start, claimed = answer[0], answer[1]
                    entries.extend(e for e in claimed if e[1])
                    if start == "0-0" or not claimed:
                        break
            fresh = await self.redis.xreadgroup(GROUP, reaper, {queue: ">"}, count=10_000)
            entries.extend(e for _, got in fresh for e in got if e[1])
        except ResponseError:  # no stream or group: nothing was ever sent to it
            return 0
        moved = 0
        for entry_id, fields in entries:
            moved += await self._move(fields.get("task", ""), worker, allow_self)
            await self.redis.xack(queue, GROUP, entry_id)
            await self.redis.xdel(queue, entry_id)
        return moved

    async def _move(self, task_id: str, worker: str, allow_self: bool = False) -> int:
        """Give ``task_id`` (now ``worker``'s, '' when parked) to another worker, park or end it."""
        need_json = await self.redis.hget(self.key("t", task_id), "need")
        if need_json is None:
            return 0
        model, prompt, most, prefix = orjson.loads(need_json)
        need = Need(model=model, prompt_tokens=prompt, max_tokens=most, prefix=prefix)
        target = self.pick(need, set() if allow_self or not worker else {worker})
        event = orjson.dumps({"from": worker, "to": target.id if target else ""})
        code = await self._scripts["reassign"](
            keys=[self.key("t", task_id)],
            args=[worker, target.id if target else "", secrets.token_hex(8), task_id, self.prefix, event],
        )
        if code == 1 and target is not None:
            self.counts["migrated"] += 1
            self.workers[target.id] = replace(target, load=target.load + 1)
            await self._event("migrated", worker=worker, to=target.id, task=task_id)
        elif code == 2:
            self.counts["lost"] += 1
            await self._event("lost", worker=worker, task=task_id)
        elif code == 3 and worker:
            await self._event("parked", worker=worker, task=task_id)
        return 1 if code else 0

    async def _unpark(self) -> None:
        parked = self.key("parked")
        entries = await self.redis.xrange(parked, count=100)
        for entry_id, fields in entries:
            task_id = fields.get("task", "")
            if await self._move(task_id, "") or await self.redis.hget(self.key("t", task_id), "worker") != "":
                await self.redis.xdel(parked, entry_id)

    async def _event(self, kind: str, **fields: Any) -> None:
        record = orjson.dumps({"at": round(self.clock(), 3), "kind": kind, **fields})
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.key("events"), record)
        pipe.ltrim(self.key("events"), 0, 99)
        await pipe.execute()

    # -- what the CLI and the dashboard show ------------------------------------------------

    async def overview(self) -> dict[str, Any]:
        await self.refresh()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key("seen"))
        pipe.hgetall(self.key("active"))
        pipe.hgetall(self.key("stats"))
        pipe.lrange(self.key("events"), 0, 49)
        pipe.xlen(self.key("parked"))
        seen, active, stats, events, parked = await pipe.execute()
        now = self.clock()
        workers = [
            {
                "id": v.id,
                "name": v.name,
                "state": v.state,
                "load": v.load,
                "active": int(active.get(v.id, 0)),
                "silent_s": round(max(0.0, now - float(seen.get(v.id, now))), 3),
                "capabilities": v.capabilities.to_json(),
            }
            for v in sorted(self.workers.values(), key=lambda v: v.id)
        ]
        return {
            "workers": workers,
            "stats": {k: int(stats.get(k, 0)) for k in ("dispatched", "migrated", "lost", "parked")},
            "parked": int(parked),
            "events": [orjson.loads(e) for e in events],
        }

    def status(self) -> dict[str, Any]:
        """This replica's counters and view (``/admin/status``, ``/metrics``)."""
        return {
            **self.counts,
            "workers": sum(1 for v in self.workers.values() if v.state == "active"),
            "waiting": len(self.waiting),
        }


class Rejoin(InvalidRequest):
    """The worker is not (or no longer) in the pool: it must join again."""

    status = 409
    code = "rejoin"


class TaskDone(InvalidRequest):
    """A result for a task that is finished or cancelled: the worker should stop."""

    status = 409
    code = "task_done"
