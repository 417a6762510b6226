"""A backend node's settings: ``NodeConfig``, read by ``NodeCore`` (node.py) and by the
parts it owns (``shipping.Shipping``, ``state_transfer.RangeCopier``,
``dependency_checks.DependencyChecks``), each of which names the fields it uses.
``chainreaction.node`` re-exports it.
"""

from __future__ import annotations

import attrs

from .versions import MAX_CLOCK_AHEAD_S


@attrs.frozen
class NodeConfig:
    eager: int = 1  # k: acknowledge once the first k nodes of the chain hold the write
    dc: int = 0
    manager: str = "manager"
    # Stamp at most this far ahead of the DC's median clock (the manager measures ours:
    # HeartbeatAck.ahead_us); further ahead, the clock is held back (versions.DcTime).
    max_clock_ahead_s: float = MAX_CLOCK_AHEAD_S
    dep_wait_s: float = 2.0  # how long the tail holds a dependency check
    resend_after_s: float = 1.0  # redrive an unstable version not stable after this
    sync_retry_s: float = 1.0
    held_put_timeout_s: float = 5.0
    max_held_puts: int = 10_000
    max_waiters: int = 100_000
    dedup_size: int = 200_000
    sync_chunk_items: int = 256
    sync_chunk_bytes: int = 1024 * 1024  # well under the transport's frame limit
    sync_chunks_per_step: int = 8  # paces a large copy over ticks (bounded link buffers)
    max_sync_streams: int = 16
    # Several DCs: a local write is DC-Write-Stable at the tail as with one DC, and shipped
    # to the DC's remote proxy (``Ship``) until it has logged it (``Shipped``), without
    # waiting for it (shipping.py); "stable" for clients means Global-Write-Stable, which
    # the proxy reports (``GeoProgress``).
    geo: bool = False
    proxy: str = "proxy"
    max_ship_resend_s: float = 8.0  # a write's resends double from resend_after_s to this
    max_ships_per_tick: int = 200  # a backlog (the proxy back after an outage) leaves paced
    # No GeoProgress nor Shipped from the proxy for this long: it is down or stopped, and
    # only one probe a resend_after_s goes to it until it speaks again.
    proxy_silence_s: float = 3.0
    # Act as head (assign versions) or tail (answer dependency checks) only under a current
    # lease from the chain's other members (chain_lease.py). Off only in single-core
    # transcripts. A lease runs ``lease_s`` from its request, renewed every
    # ``lease_renew_s``; after a ring change a node grants none for up to ``lease_s``.
    require_lease: bool = True
    lease_s: float = 0.5
    lease_renew_s: float = 0.1
    # a member that granted no lease for this long is reported to the manager (links.py)
    link_silence_s: float = 0.3
    # Tombstones are collected no sooner than this after their stamp
    # (chainreaction/tombstones.py).
    tombstone_grace_s: float = 600.0
    tick_s: float = 0.05  # housekeeping: expiries, redrive, copy pacing, tombstones
    # A replaced version is kept this long for GET-TRANSACTIONs reading before it
    # (snapshots.py); 0: none kept, and snapshot reads are refused.
    snapshot_retention_s: float = 5.0
    heartbeat_s: float = 0.2  # to the manager, which measures our clock in its answer

    def __attrs_post_init__(self):
        if self.eager < 1:
            raise ValueError("eager (k) must be >= 1")
        if self.snapshot_retention_s < 0:
            raise ValueError("snapshot_retention_s must be >= 0")
