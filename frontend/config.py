"""The frontend's settings (``FrontendConfig``), importable from ``frontend.core`` too."""

from __future__ import annotations

import attrs

from chainreaction.versions import MAX_CLOCK_AHEAD_S

# chain: ChainReaction (any position the session proved safe); head, tail: always there
# (tail = classic chain replication); craq: any position, answering only with a version
# the tail has, else asking the tail (CRAQ's version query)
READ_POLICIES = ("chain", "head", "tail", "craq")
TXN_POLICIES = ("one-round", "cops-gt")


@attrs.frozen
class FrontendConfig:
    manager: str = "manager"
    read_from: str = "chain"
    request_timeout_s: float = 10.0
    node_timeout_s: float = 1.0
    dep_timeout_s: float = 3.0  # > the tail's dependency wait, so checks don't pile up
    # A put waits this long for the StableNotice of a dependency this frontend wrote
    # (dependencies.AwaitNotice) before it asks the tail instead.
    notice_wait_s: float = 0.5
    # A session's floor (and its dependencies' clocks) up to this far ahead of the DC's time
    # is taken as is; above, only once some process of the DC has made or seen a clock that
    # high (the store made it), and refused as not the store's once the manager has
    # reported the DC's clocks for ``floor_proof_s`` without one (docs/protocol.md §3.1).
    max_clock_skew_s: float = 60.0
    floor_proof_s: float = 1.0
    max_clock_ahead_s: float = MAX_CLOCK_AHEAD_S
    retry_delay_s: float = 0.05
    ring_refresh_s: float = 0.2
    max_ops: int = 100_000
    max_known_stable: int = 100_000
    dc: int = 0
    geo: bool = False
    proxy: str = "proxy"
    # The node this frontend runs inside (``node --ws``): a read it may serve (its position
    # within what the session proved safe) goes there, without a network hop.
    local_node: str | None = None
    # Breaks causal consistency on purpose, to prove that the Jepsen-style checker finds
    # anomalies: writes and attaches do not wait for dependencies, reads ignore the
    # session's versions (any chain node, any version). Never for real use.
    unsafe_skip_dependency_checks: bool = False
    # Breaks causal consistency on purpose (a "faster path" the checker must catch): every
    # read goes to the node in this process, outside the session's chainIndex too, and
    # without the session's version (the node cannot refuse it). Never for real use.
    unsafe_local_reads: bool = False
    # Breaks GET-TRANSACTIONs on purpose (transactions.py): each key read at its own
    # stamp, as independent gets from replicas of varying freshness. Never for real use.
    unsafe_independent_txn_reads: bool = False
    # "one-round": a transaction reads every key at one stamp (transactions.py). "cops-gt":
    # the baseline of the paper's experiment (sim run gt): when the first round's versions
    # are of different instants, a second round reads every key again at the newest of
    # them, as COPS-GT re-reads what the dependencies of the first answers require.
    txn_policy: str = "one-round"
    tick_s: float = 0.05  # while operations are in flight: deadlines, retries, resends
    heartbeat_s: float = 0.2
    geo_stats_s: float = 1.0  # how often the proxy's stats are fetched (the ``geo`` field)
    # The proxy answered nothing (those stats included) for this long: it is down or
    # stopped, and what needs it fails at once (retryable) rather than at its deadline.
    proxy_silence_s: float = 3.0
    attach_wait_s: float = 1.0  # for the session's past, then refused (retryable; see attach)

    def __attrs_post_init__(self):
        if self.read_from not in READ_POLICIES:
            raise ValueError(f"read_from must be one of {READ_POLICIES}")
        if self.txn_policy not in TXN_POLICIES:
            raise ValueError(f"txn_policy must be one of {TXN_POLICIES}")
