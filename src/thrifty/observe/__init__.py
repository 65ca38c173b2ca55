"""Observability: the usage ledger, Prometheus metrics, latency health, feedback, dashboard.

The gateway calls :meth:`Observer.record` once per finished request. That call
only appends the event to a queue; a background writer thread prices it,
counts it and writes it to the SQLite ledger in batches. Readers (``/metrics``,
the dashboard, feedback) first fold any queued events into the counters, so
what they show is never behind what was recorded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import Config
from ..errors import StorageUnavailable
from ..prices import PriceTable
from ..storage import Outage, cause, confirmed_damaged, is_damaged, set_aside
from ..types import Message
from .anomaly import Anomalies, Anomaly
from .events import RequestEvent
from .feedback import TakesSignals
from .health import Alert, HoldsModel, Needs, evaluate, process_age, rss_bytes, window_health
from .ledger import Ledger, PromptRow
from .settings import parse_alerts, parse_ledger, parse_telemetry
from .spans import Spans, default_spans
from .tally import COLUMNS, Row, Tally
from .upstreams import ReportsUpstreams, Upstreams

T = TypeVar("T")

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["Observer", "RequestEvent"]

log = logging.getLogger("thrifty.observe")
_API_KEY = COLUMNS.index("api_key")
_COST = COLUMNS.index("cost_usd")
_KNOWN_IDS = 20_000  # recent request ids kept in memory for feedback linking (older: on disk)
_CHUNK = 64  # events the writer counts between yields of the GIL (~1 ms)
_MAX_QUEUE = 200_000  # rows held in memory at most while the ledger is closed or failing
_FACTS = ("model", "deployment", "tier", "route", "api_key")  # api_key: the owner's key id
# breaker states reported as words become numbers a graph can show
_STATES = {"closed": 0.0, "half_open": 1.0, "half-open": 1.0, "open": 2.0}


class Observer:
    """Collects request events; serves metrics, feedback and the dashboard."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        tracer: Any = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ledger_settings = parse_ledger(config)
        self.alert_settings = parse_alerts(config)
        self.prices = PriceTable(config)
        spans = Spans(tracer) if tracer is not None else default_spans(parse_telemetry(config))
        self.tally = Tally(self.prices, self.alert_settings.window_s, spans)
        self.ledger: Ledger | None = None
        self.started_at = clock()
        self.startup_s: float | None = None
        self.feedback_ratings: dict[int, int] = {}
        self._pending: deque[RequestEvent] = deque()
        self._unwritten: list[Row] = []
        self._prompts: list[PromptRow] = []  # the prompt log's rows, written with the rows
        self._prompt_text: Callable[[list[Message]], str] | None = None
        self._known: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        # /metrics, the dashboard and alerts render on a thread of their own, so CPU work
        # of requests (embeddings, compression, routing) in the shared pool never delays them
        self._readers: ThreadPoolExecutor | None = None
        self._batch = self.ledger_settings.batch_rows
        self._failing = False
        # why the ledger cannot be opened or written now; when to try again
        self.outage = Outage("ledger", log)
        self.rows_dropped = 0  # rows lost because the in-memory hold was full
        self._firing: dict[tuple[str, str], str] = {}
        self.dropped = 0  # events that could not be accounted for
        self._listeners: list[Callable[[str, int], None]] = []
        self.learners: list[TakesSignals] = []  # layers that hear whole signals (thrifty.learn)
        self._gauges: dict[str, Callable[[], dict[str, float]]] = {}
        self.upstreams = Upstreams(self.alert_settings.window_s, log_every_s=self.alert_settings.log_every_s)
        anomaly = self.alert_settings.anomaly
        self.anomalies = Anomalies(anomaly) if anomaly is not None else None
        self._spikes_logged: set[Anomaly] = set()
        self.models: list[HoldsModel] = []  # layers holding model weights: startup and memory allowance

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Open the ledger and start the writer thread (idempotent).

        A ledger that cannot be opened (read-only, disk full, locked) does not
        stop the start: rows are held in memory, :meth:`degraded` says why, and
        the writer thread tries again with a bounded backoff.
        """
        if self._thread is not None:
            return
        await asyncio.to_thread(self._open_ledger)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="thrifty-ledger", daemon=True)
        self._thread.start()

    def _open_ledger(self) -> bool:
        try:
            ledger = Ledger(self.ledger_settings.path)
        except StorageUnavailable as exc:
            self.outage.failed(exc.message)
            return False
        self.ledger = ledger
        self._failing = False
        self.outage.recovered()
        return True

    async def aclose(self) -> None:
        """Write every queued row to the ledger, then close it."""
        thread = self._thread
        if thread is not None:
            self._stop = True
            self._wake.set()
            await asyncio.to_thread(thread.join)
        self.close()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a reader of the observer's state (rendering, ledger lookups) on its own thread."""
        if self._readers is None:
            self._readers = ThreadPoolExecutor(1, thread_name_prefix="thrifty-observe")
        return await asyncio.get_running_loop().run_in_executor(self._readers, functools.partial(fn, *args))

    def close(self) -> None:
        """:meth:`aclose` for callers without an event loop (or at interpreter exit): blocks."""
        if self._readers is not None:
            self._readers.shutdown(wait=False)
            self._readers = None
        thread = self._thread
        if thread is not None:
            self._stop = True
            self._wake.set()
            thread.join()
            self._thread = None
            if self._unwritten or self._pending or self._prompts:
                log.error(
                    "%d ledger rows could not be written before closing (%s)",
                    len(self._unwritten) + len(self._pending) + len(self._prompts),
                    self.outage.problem or "writer stopped",
                )
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    def degraded(self) -> list[str]:
        """Why the ledger is not being written now (empty when it is)."""
        problem = self.outage.problem
        if problem is None:
            return []
        held = len(self._pending) + len(self._unwritten)
        lost = f", {self.rows_dropped} dropped" if self.rows_dropped else ""
        return [f"{problem}; {held} rows held in memory{lost}"]

    def mark_ready(self, startup_s: float | None = None) -> None:
        """Note how long startup took: from the process's start to ready (the one definition)."""
        self.startup_s = process_age() if startup_s is None else startup_s
        if self.startup_s is not None:
            needs = self.needs()
            loading = f"; loading models took {needs.load_s * 1000:.0f} ms" if needs.load_s else ""
            log.info("ready: startup took %.0f ms (process start to ready%s)", self.startup_s * 1000, loading)

    def needs(self) -> Needs:
        """What the loaded models take: file bytes and load time, summed."""
        footprints = [layer.footprint() for layer in self.models]
        return Needs(sum(f[0] for f in footprints), sum(f[1] for f in footprints))

    # -- the hot path -----------------------------------------------------------

    def record(self, event: RequestEvent) -> None:
        """Queue one finished request; no I/O, no pricing here."""
        pending = self._pending
        pending.append(event)
        if len(pending) >= self._batch:
            self._wake.set()
            if self._thread is None and len(pending) > _MAX_QUEUE:
                pending.popleft()  # never started: keep memory bounded
                self._drop(1)

    # -- hooks for other layers ---------------------------------------------------

    def add_feedback_listener(self, fn: Callable[[str, int], None]) -> None:
        self._listeners.append(fn)

    def add_learner(self, layer: TakesSignals) -> None:
        """``layer`` hears every stored rating with its comment, correction and end user."""
        self.learners.append(layer)

    def add_gauge_source(self, name: str, fn: Callable[[], dict[str, float]]) -> None:
        self._gauges[name] = fn

    def watch(self, layer: object) -> None:
        """Read ``layer``'s upstream counts (a model group) or model footprint, as it has them."""
        if isinstance(layer, ReportsUpstreams):
            self.upstreams.add(layer)
        if isinstance(layer, HoldsModel):
            self.models.append(layer)

    def routes(self) -> list[BaseRoute]:
        from .routes import build_routes

        return build_routes(self)

    # -- folding events in and writing them out -----------------------------------

    def absorb(self, limit: int = 0) -> None:
        """Count queued events now, at most ``limit`` (0: all); readers call this first."""
        pending = self._pending
        if not pending:
            return
        with self._lock:
            count = min(limit, len(pending)) if limit else len(pending)
            for _ in range(count):  # only absorb pops, under the lock: never empty here
                event = pending.popleft()
                try:
                    row = self.tally.add(event)
                    calls = self.tally.add_calls(event) if event.calls else []
                except Exception:  # one malformed event must not stop the accounting
                    self.dropped += 1
                    log.exception(
                        "cannot account for request %r; skipped", getattr(event, "request_id", event)
                    )
                    continue
                self._unwritten.append(row)
                self._unwritten.extend(calls)  # the calls besides the answer: rows of their own
                cost = row[_COST] + sum(r[_COST] for r in calls)
                if event.messages is not None and self.ledger_settings.log_prompts:
                    self._log_prompt(event)
                self._known[event.request_id] = (*row[2:6], row[_API_KEY])
                if event.fallback is not None:
                    self.upstreams.on_fallback(event.fallback)
                if self.anomalies is not None:
                    self.anomalies.add(event.ts, event.api_key, event.model, cost, event.status >= 500)
            while len(self._known) > _KNOWN_IDS:
                self._known.popitem(last=False)
            self._bound()

    def _log_prompt(self, event: RequestEvent) -> None:
        """The prompt log's row: the text the router reads from the request's messages."""
        render = self._prompt_text
        if render is None:
            from ..routing.features import prompt_text

            render = self._prompt_text = prompt_text
        assert event.messages is not None
        text = render(event.messages)
        event.messages = None  # the messages are not kept beyond this
        if text:
            self._prompts.append((event.request_id, event.ts, event.api_key, text))

    def _bound(self) -> None:
        """Keep at most ``_MAX_QUEUE`` unwritten rows, dropping the oldest (under the lock)."""
        extra = len(self._unwritten) - _MAX_QUEUE
        if extra > 0:
            del self._unwritten[:extra]
            self._drop(extra)
        extra = len(self._prompts) - _MAX_QUEUE
        if extra > 0:
            del self._prompts[:extra]
            self._drop(extra)

    def _drop(self, count: int) -> None:
        if not self.rows_dropped:
            log.error(
                "the ledger cannot keep up (%s): more than %d rows held in memory, dropping the oldest",
                self.outage.problem or "writer not started",
                _MAX_QUEUE,
            )
        self.rows_dropped += count

    def flush(self, *, force: bool = False) -> int:
        """Absorb and write what is queued; returns the rows written.

        While writes fail they are retried only when the backoff allows
        (``force``: now); the rows stay in memory meanwhile.
        """
        while len(self._pending) > _CHUNK:
            self.absorb(_CHUNK)
            time.sleep(0)  # let the event loop thread have the GIL between chunks
        self.absorb()
        ledger = self.ledger
        waiting = self._failing and not (force or self.outage.backoff.due())
        if ledger is None or waiting or not (self._unwritten or self._prompts):
            return 0
        with self._lock:
            rows, self._unwritten = self._unwritten, []
            prompts, self._prompts = self._prompts, []
        try:
            ledger.write(rows, prompts)
        except sqlite3.Error as exc:
            with self._lock:
                self._unwritten[:0] = rows
                self._prompts[:0] = prompts
                self._bound()
            if is_damaged(exc) and confirmed_damaged(ledger.path):
                self._replace_damaged(ledger, exc)
            else:
                self._failing = True
                self.outage.failed(f"ledger writes to {ledger.path} fail: {cause(exc)}")
            return 0
        if self._failing:
            self._failing = False
            self.outage.recovered()
        return len(rows)

    def _replace_damaged(self, ledger: Ledger, exc: sqlite3.Error) -> None:
        """The ledger turned out damaged while running: move it aside, start a new one."""
        self.ledger = None
        ledger.close()
        try:
            kept = set_aside(ledger.path)
        except OSError as err:
            self.outage.failed(f"the ledger {ledger.path} is damaged and cannot be moved aside: {cause(err)}")
            return
        log.error(
            "the ledger %s is damaged (%s); moved it to %s and started a new one",
            ledger.path,
            cause(exc),
            kept,
        )
        self._open_ledger()

    def _run(self) -> None:
        try:
            self.prices.warm()  # load the price table here, off the event loop
        except Exception:  # a broken price table must not stop the ledger
            log.exception("loading the price table failed")
        while True:
            self._wake.wait(self.ledger_settings.flush_s)
            self._wake.clear()
            stopping = self._stop
            try:
                if self.ledger is None and (stopping or self.outage.backoff.due()):
                    self._open_ledger()
                self.flush(force=stopping)
            except Exception:  # the writer must outlive any one bad batch
                log.exception("ledger writer error")
            try:
                self.sample()
            except Exception:  # a broken group report must not stop the ledger
                log.exception("reading the upstream counts failed")
            unwritten = self._pending or self._unwritten or self._prompts
            if stopping and (not unwritten or self._failing or self.ledger is None):
                return

    def sample(self, *, force: bool = False) -> None:
        """Read the groups' counts and log their changes (at most every second unless ``force``);
        close the anomaly bucket that is over and log its spikes, whether anyone reads alerts or not."""
        with self._lock:
            now = self.clock()
            self.upstreams.tick(now, force=force)
            anomalies = self.anomalies
            if anomalies is None:
                return
            spikes = anomalies.check(now)
            for spike in spikes:
                if spike not in self._spikes_logged:
                    log.warning("alert: %s", spike.message(anomalies.bucket_s))
            self._spikes_logged = set(spikes)

    # -- reading --------------------------------------------------------------------

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        """The ledger facts of one request: queued, in memory, or on disk."""
        self.absorb()
        with self._lock:
            known = self._known.get(request_id)
        if known is not None:
            return dict(zip(_FACTS, known, strict=True))
        return self.ledger.find(request_id) if self.ledger is not None else None

    def gauges(self) -> dict[str, dict[str, float]]:
        """Every gauge source read now; a failing source is skipped."""
        out: dict[str, dict[str, float]] = {}
        for name, fn in list(self._gauges.items()):
            try:
                values = fn()
            except Exception:  # a broken source must not break a scrape
                log.exception("gauge source %s failed", name)
                continue
            out[name] = _numbers(values)
        return out

    def reports(self) -> dict[str, Any]:
        """Every gauge source's report as it gave it (text and lists kept); a failing source is skipped."""
        out: dict[str, Any] = {}
        for name, fn in list(self._gauges.items()):
            try:
                out[name] = fn()
            except Exception:
                log.exception("gauge source %s failed", name)
        return out

    def parallel(self, gauges: dict[str, dict[str, float]]) -> tuple[float | None, float | None]:
        """(parallel speedup, share of tool calls run in parallel) from an "agent" source."""
        for name, values in gauges.items():
            if name.lower().startswith("agent"):
                share = values.get("parallel_share", values.get("parallel_tool_calls"))
                return values.get("speedup"), share
        return None, None

    def alerts(self, gauges: dict[str, dict[str, float]] | None = None) -> list[Alert]:
        """The alerts firing now; each one that starts or clears is logged once."""
        self.absorb()
        gauges = self.gauges() if gauges is None else gauges
        self.sample(force=True)  # readers see the groups as they are now
        with self._lock:
            now = self.clock()
            samples = self.tally.recent_samples(now)
            deployments = self.upstreams.figures(now)
            spikes = self.anomalies.check(now) if self.anomalies is not None else []
        health = window_health(samples, self.alert_settings)
        alerts = evaluate(
            self.alert_settings,
            health,
            startup_s=self.startup_s,
            rss=rss_bytes(),
            parallel_share=self.parallel(gauges)[1],
            needs=self.needs(),
            deployments=deployments,
        )
        if self.anomalies is not None:
            bucket = self.anomalies.bucket_s
            for a in spikes:
                alerts.append(
                    Alert(f"anomaly_{a.figure}", a.value, a.limit, a.message(bucket), f"{a.key} {a.model}")
                )
        firing = {(a.rule, a.subject): a.message for a in alerts}
        for key, message in firing.items():
            if key not in self._firing and not key[0].startswith("anomaly_"):  # sample() logs those
                log.warning("alert: %s", message)
        for key in self._firing.keys() - firing.keys():
            if not key[0].startswith("anomaly_"):  # a spike is one bucket long: its end is no news
                log.info("alert cleared: %s", self._firing[key])
        self._firing = firing
        return alerts


def _numbers(values: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(values, dict):
        return out
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, (bool, int, float)):
            out[name] = float(value)
        elif isinstance(value, str) and value.lower() in _STATES:
            out[name] = _STATES[value.lower()]
        elif isinstance(value, dict) and not prefix:
            out.update(_numbers(value, f"{name}."))
    return out
