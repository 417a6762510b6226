"""Service times: what each handled message costs the process's one CPU.

A process handles one message at a time, in arrival order; a message that arrives while
it is busy waits in its queue. So offered load beyond ``1 / cost`` per process builds
queues and latency, and a cluster's throughput saturates at its busiest process (a hot
key's tail, a frontend, a proxy), as real ones do. Without a ``ServiceModel`` handling
is instantaneous (the protocol tests use that).

Costs are in microseconds, per role and message kind, plus a cost per KiB of payload
(values, shipped batches). The defaults are the order of magnitude a CPython process on
this stack spends per small CBOR message (decode, handle, encode: 30-150 us); they are
parameters, not measurements of any one machine.
"""

from __future__ import annotations

import attrs

ROLES = ("node", "frontend", "proxy", "manager")

DEFAULT_COSTS_US = {
    ("node", "Put"): 120.0,
    ("node", "Update"): 90.0,
    ("node", "Read"): 60.0,
    ("node", "DepCheck"): 50.0,
    ("node", "PutAck"): 30.0,
    ("node", "Stable"): 40.0,
    ("node", "GeoProgress"): 30.0,
    ("frontend", "client"): 60.0,  # a client request (decode, route)
    ("frontend", "ReadReply"): 40.0,  # includes the reply to the client
    ("frontend", "PutAck"): 40.0,
    ("frontend", "ReadMiss"): 30.0,
    ("frontend", "DepReply"): 30.0,
    ("proxy", "Ship"): 40.0,
    ("proxy", "ShipBatch"): 60.0,
    ("manager", "Heartbeat"): 20.0,
}
DEFAULT_ROLE_US = {"node": 50.0, "frontend": 30.0, "proxy": 40.0, "manager": 20.0}


@attrs.frozen
class ServiceModel:
    costs_us: dict = attrs.field(factory=lambda: dict(DEFAULT_COSTS_US))
    role_us: dict = attrs.field(factory=lambda: dict(DEFAULT_ROLE_US))
    per_kib_us: float = 10.0
    per_entry_us: float = 25.0  # each update inside a shipped batch
    # (sim/cpu.py) the machine's cores every process shares; None: a core per process; of
    # them, what the rest of the machine keeps busy on average (other tenants, the kernel)
    cores: int | None = None
    other_cores: float = 0.0
    # what a message costs more when it came over a socket than from a core in the same
    # process (a node's own frontend): decoding, the syscalls, the event loop's passes
    socket_us: float = 0.0
    # the client process's CPU per operation ("get", "put", ...: the SDK, its WebSocket,
    # the request and its reply); empty: clients cost nothing
    client_us: dict = attrs.field(factory=dict)
    # (sim/cpu.py) a node's group commit: each sync stops its event loop this long (0: the
    # writes are not synced, durability none)
    sync_us: float = 0.0

    def scaled(self, factor: float) -> "ServiceModel":
        """Every cost times ``factor`` (a faster or slower machine)."""
        return attrs.evolve(self, costs_us={k: v * factor for k, v in self.costs_us.items()},
                            role_us={k: v * factor for k, v in self.role_us.items()},
                            per_kib_us=self.per_kib_us * factor,
                            per_entry_us=self.per_entry_us * factor,
                            socket_us=self.socket_us * factor,
                            client_us={k: v * factor for k, v in self.client_us.items()})

    def client_cost_s(self, op: str) -> float:
        return self.client_us.get(op, 0.0) * 1e-6

    def cost_s(self, role: str, kind: str, msg, local: bool = False) -> float:
        us = self.costs_us.get((role, kind))
        if us is None and kind.startswith("client:"):  # per op, else any client request
            us = self.costs_us.get((role, "client"))
        if us is None:
            us = self.role_us.get(role, 0.0)
        if not local:
            us += self.socket_us
        entries = getattr(msg, "entries", None)
        if entries:
            us += self.per_entry_us * len(entries)
            size = sum(len(e.value) for e in entries if e.value)
        else:
            value = getattr(msg, "value", None)
            size = len(value) if type(value) is bytes else 0
        if size:
            us += self.per_kib_us * size / 1024
        return us * 1e-6
