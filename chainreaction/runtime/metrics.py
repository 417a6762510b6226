"""Prometheus metrics of one process over HTTP (``--metrics-listen HOST:PORT``; a
manager's port also serves the DC's status page, chainreaction/status.py).

What a process counts already lives in its core (``counters``, ``stats()``) and its
transport; a collector turns them into metric families at each scrape, so nothing on the
hot path changes. On top of that: client requests per op and their latency (a histogram,
frontends), errors per code, remote visibility per origin DC (proxies) and the size of the
data on disk (nodes, proxies). ``prometheus-client`` writes the exposition; ``hypercorn``
serves it on trio.
"""

from __future__ import annotations

import logging
import os
import re

import trio

log = logging.getLogger(__name__)

# seconds: from a client request's arrival at the frontend to its reply leaving it
REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
                   5.0, 15.0)
QUANTILES = (0.5, 0.99)


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def _dir_bytes(path: str) -> int:
    total = 0
    try:
        entries = list(os.scandir(path))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += _dir_bytes(entry.path)
            else:
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


class ProcessMetrics:
    """The registry of one process: its core's and transport's numbers, read at scrape
    time, and the request histogram the frontend's client server feeds."""

    def __init__(self, driver, data_path: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.driver = driver
        self.data_path = data_path
        self.status = None  # a manager: () -> its status page's data (status.py)
        # cores in the same process, exported under their own names (a node's frontend)
        self.co_hosted: list = []
        if getattr(driver.core, "role", None) == "manager":
            from ..status import status

            self.status = lambda: status(driver.core, driver.clock())
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.requests = Histogram(
            "chainreaction_request_seconds", "Client requests by op, from arrival at the "
            "frontend to the reply", ["op"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.errors = Counter("chainreaction_request_errors", "Client requests answered with "
                              "an error, by op and code", ["op", "code"],
                              registry=self.registry)

    def request_done(self, op: str, seconds: float, error: str | None) -> None:
        self.requests.labels(op).observe(seconds)
        if error is not None:
            self.errors.labels(op, error).inc()

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        core = self.driver.core
        who = [core.name, core.role]
        events = CounterMetricFamily(
            "chainreaction_events", "What the process counts (its core's and transport's "
            "counters: messages handled, puts applied, chain updates, dependency checks, "
            "range copies, WAN bytes, refusals...)", labels=["process", "role", "event"])
        state = GaugeMetricFamily(
            "chainreaction_state", "What the process reports now (its stats: ring epoch, "
            "writes not yet stable, dependency waiters, replication lag, old versions "
            "kept, clock offset...)", labels=["process", "role", "name"])
        for driver in (self.driver, *self.co_hosted):
            _add_counts(driver, events, state)
        yield events
        yield state
        if self.data_path is not None:
            yield self._storage(who)
        receiver = getattr(core, "receiver", None)
        if receiver is not None:  # a proxy: how long other DCs' writes take to show here
            visible = GaugeMetricFamily(
                "chainreaction_remote_visibility_seconds", "From a write's stamp in its "
                "origin DC to readable at every replica here, per origin DC (quantiles of "
                "the writes applied since the start)",
                labels=["process", "origin_dc", "dc", "quantile"])
            for origin, recorder in sorted(receiver.visibility.items()):
                for q in QUANTILES:
                    visible.add_metric([core.name, str(origin), str(core.dc), str(q)],
                                       recorder.percentile(q * 100))
            yield visible

    def _storage(self, who: list):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("chainreaction_storage_bytes", "Bytes of the process's "
                                   "data on disk", labels=["process", "role"])
        family.add_metric(who, _dir_bytes(self.data_path))
        return family


def _add_counts(driver, events, state) -> None:
    """One core's counters and stats (and its transport's counters), under its name."""
    core = driver.core
    who = [core.name, core.role]
    counted = set()
    for source in (core.counters, driver.transport.counters):
        for key, value in sorted(source.items()):
            if type(value) is int and key not in counted:
                counted.add(key)
                events.add_metric([*who, _name(key)], value)
    for key, value in sorted(core.stats().items()):
        if key not in counted and type(value) in (int, float):
            state.add_metric([*who, _name(key)], value)


async def _status(status, path: str, send) -> None:
    """A manager's status page (chainreaction/status.py): the page, or its data."""
    import json

    from ..status import PAGE

    if path == "/status.json":
        body, kind = json.dumps(status()).encode(), b"application/json"
    else:
        body, kind = PAGE.encode(), b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def serve_metrics(metrics: ProcessMetrics, listen: str,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics`` (and ``/``) on ``listen`` until cancelled."""
    import hypercorn.config
    import hypercorn.trio
    from prometheus_client import make_asgi_app

    config = hypercorn.config.Config()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.errorlog.setLevel(logging.WARNING)
    exposition = make_asgi_app(registry=metrics.registry)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":  # (nothing to start or stop)
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope.get("path", "")
        if metrics.status is not None and path in ("/status", "/status.json", "/"):
            await _status(metrics.status, path, send)
            return
        await exposition(scope, receive, send)

    await hypercorn.trio.serve(app, config, task_status=task_status)
