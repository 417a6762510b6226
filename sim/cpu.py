"""Who handles what, when: the simulator's processes on CPUs (with a ``ServiceModel``).

A process has one thread: it handles one message at a time, in arrival order, each for
the service time its model gives; what it sends leaves when it is done. Without
``ServiceModel.cores`` every process has a core of its own. With it, all of them share
that many cores, as the processes of a local cluster share one machine: a process with
work takes the core that frees first (non-preemptive, first come first served), so it may
wait for a core even when its own queue is empty. A node's own frontend (``node --ws``)
is in the node's process: one thread for both (``host``). With client costs in the model,
the clients are one more process (the bench's one client process): each operation costs
it CPU on the same cores (taken as the request leaves; its reply's share included).

With ``ServiceModel.sync_us``, nodes group-commit as the real driver does at durability
``group`` (runtime/driver.py): once a node's thread has handled what was there to handle
(or a pass's worth), it syncs the writes made since its last sync, on its event loop: for
that long it handles nothing, without using a core, and what it sent since the group's
first write leaves when the sync is done.
"""

from __future__ import annotations

import collections

CLIENTS = "clients"  # the client process's CPU key
EPSILON_S = 1e-12
WRITE_KINDS = frozenset({"Put", "Update", "Stable"})  # what a node writes to its store for
PASS_ITEMS = 8  # a driver's pass: at most this many messages before its group's sync


class Cpus:
    def __init__(self, cluster, service) -> None:
        self.cluster = cluster
        self.service = service
        cores = getattr(service, "cores", None)
        self.cores: list[float] | None = [0.0] * cores if cores else None
        # the rest of the machine keeps ``other_cores`` busy: each core is slower for us
        other = getattr(service, "other_cores", 0.0)
        self.stretch = cores / (cores - other) if cores and 0 < other < cores else 1.0
        self.busy_until: dict[str, float] = {}
        self.queues: dict[str, collections.deque] = {}
        self.reserved: dict[str, float] = {}  # process -> when the core it took is its own
        self.busy_s: dict[str, float] = collections.defaultdict(float)
        self.host: dict[str, str] = {}  # a node's own frontend -> the node
        self.sync_s = getattr(service, "sync_us", 0.0) * 1e-6
        self.unsynced: dict[str, int] = {}  # node -> messages handled since its first write
        self.held: dict[str, list] = {}  # node -> [(name, effects)] waiting for its sync

    def key(self, name: str) -> str:
        """The process (thread) that ``name``'s core runs in."""
        return self.host.get(name, name)

    def cost(self, work: tuple) -> float:
        """Seconds that ``work`` keeps a core (0 without a service model)."""
        return self._cpu(work) * self.stretch

    def _cpu(self, work: tuple) -> float:
        if self.service is None:
            return 0.0
        kind = work[0]
        if kind == "msg":
            _, src, dst, msg = work
            local = self.key(src) == self.key(dst)
            return self.service.cost_s(self.cluster.role_of[dst], type(msg).__name__, msg,
                                       local=local)
        if kind == "req":
            req = work[3]
            return self.service.cost_s("frontend", "client:" + req.op, req)
        return self.service.client_cost_s(work[3].op)  # "creq": the client process

    def arrive(self, dst: str, work: tuple) -> None:
        """Work for ``dst`` arrives now: handle it, or queue it behind what keeps its
        thread (or every core) busy."""
        key = self.key(dst)
        queue = self.queues.get(key)
        if queue is not None:
            queue.append(work)
            return
        self.queues[key] = collections.deque([work])
        free = self.busy_until.get(key, 0.0)
        if free > self.cluster.now:
            self.cluster._schedule(free - self.cluster.now, ("cpu", key))
            return
        self.run(key)

    def run(self, key: str) -> None:
        """``key``'s thread is free now: its next work, once it has a core."""
        cluster = self.cluster
        queue = self.queues.get(key)
        if not queue:
            self.queues.pop(key, None)
            return
        if key in cluster.down or (key not in cluster.processes and key != CLIENTS):
            self.drop(key)
            return
        if key in cluster.paused:
            cluster.paused[key].extend(queue)
            self.drop(key)
            return
        now = cluster.now
        if self.busy_until.get(key, 0.0) > now + EPSILON_S:
            return  # (a stale wake-up: the one planned for when it is free comes later)
        start = self.reserved.pop(key, None)
        if start is None:
            start = self._take_core(now, self.cost(queue[0]))
        if start > now + EPSILON_S:  # every core is busy: it waits for the one it took
            self.reserved[key] = self.busy_until[key] = start
            cluster._schedule(start - now, ("cpu", key))
            return
        work = queue.popleft()
        cost = cluster._handle(work)
        self.busy_s[key] += cost / self.stretch  # (CPU time: what the bench measures)
        if self.queues.get(key) is not queue:
            return  # (it stopped while handling it: its thread is gone)
        free = now + cost
        if key in self.unsynced:
            self.unsynced[key] += 1
            if not queue or self.unsynced[key] >= PASS_ITEMS:
                free = self._sync(key, free)
        self.busy_until[key] = free
        if queue:
            cluster._schedule(free - now, ("cpu", key))
        else:
            del self.queues[key]

    def hold(self, name: str, work: tuple, effects: list) -> bool:
        """Whether ``effects`` of ``name`` wait for its node's next sync (group commit):
        a write's, and anything sent after one before the sync."""
        if not self.sync_s or self.cluster.role_of.get(name) != "node":
            return False
        wrote = work[0] == "msg" and type(work[3]).__name__ in WRITE_KINDS
        if not wrote and name not in self.unsynced:
            return False
        self.unsynced.setdefault(name, 0)
        self.held.setdefault(name, []).append((name, effects))
        return True

    def _sync(self, key: str, at: float) -> float:
        """The group's sync, from ``at``: returns when the thread is free again."""
        del self.unsynced[key]
        group = self.held.pop(key, [])
        end = at + self.sync_s
        self.cluster._schedule(end - self.cluster.now, ("call", lambda: self._synced(group)))
        return end

    def _synced(self, group: list) -> None:
        for name, effects in group:
            if name not in self.cluster.down:
                self.cluster._apply(name, effects)

    def _take_core(self, at: float, cost: float) -> float:
        """The start of ``cost`` seconds on the core that frees first (``at`` with a core
        per process)."""
        if self.cores is None or cost == 0.0:
            return at
        i = min(range(len(self.cores)), key=self.cores.__getitem__)
        start = max(at, self.cores[i])
        self.cores[i] = start + cost
        return start

    def drop(self, key: str) -> None:
        """A crashed (or stopped: the caller keeps its queue) process's thread."""
        self.unsynced.pop(key, None)
        self.held.pop(key, None)
        self.queues.pop(key, None)
        self.busy_until.pop(key, None)
        self.reserved.pop(key, None)
