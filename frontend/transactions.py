"""GET-TRANSACTIONs at the frontend (docs/protocol.md §8): part of ``FrontendCore``
(core.py), split out to keep each module to one job.

A transaction reads all its keys at one stamp ``at``: a ``SnapshotRead`` to each key's
head, which answers with the version it had applied at or before ``at`` (the node side:
chainreaction/snapshots.py). ``at`` is the session's floor or, if larger, the newest clock
we know the store made: the session's past is in the snapshot (its floor is past every
version it saw or wrote), and the snapshot is recent. One round in the common case; the
transaction starts again, whole, at a new stamp when a head answers from another ring
epoch than the others (a new head may have applied writes below ``at``), no longer holds
the versions before ``at`` (``horizon``: then at least there), cannot serve yet (syncing,
no lease, not head any more) or does not answer; ``unavailable`` at the deadline.

``unsafe_independent_txn_reads`` (a test of the checker, never for real use): each key is
read at its own stamp, one after the other, as independent gets from replicas of varying
freshness would: the first as stale as the session allows (its floor), each next one at
the newest clock we know. A transaction so may return a value beside another whose past
holds a newer write of its key.
"""

from __future__ import annotations

import attrs

from chainreaction import messages as m
from chainreaction.effects import Send, ToClient


@attrs.define(slots=True)
class _Txn:
    conn: int
    client_id: int
    keys: tuple
    deadline: float
    wanted: dict  # key -> the session's newest version of it (or None)
    floor: int
    floor_ok: bool = False
    floor_unproven_at: float | None = None
    at: int = 0
    epoch: int = 0
    reads: dict = attrs.Factory(dict)  # read id -> key, of the current round
    answers: dict = attrs.Factory(dict)  # key -> SnapshotReply
    sent_at: float = 0.0
    retry_at: float | None = None
    rounds: int = 0
    second: bool = False  # txn_policy "cops-gt": in its second round
    why: str = "no snapshot of these keys could be read in time"


class FrontendTransactions:
    """Mixed into ``FrontendCore``: ``_txns`` (id -> _Txn) and ``_txn_of`` (read id ->
    transaction id) are its own."""

    def _start_txn(self, conn: int, req: m.ClientRequest, now: float) -> list:
        wanted: dict = {}
        for dep in req.deps:
            if dep.key in req.keys and (wanted.get(dep.key) is None
                                        or dep.version > wanted[dep.key]):
                wanted[dep.key] = dep.version
        floor = max([req.floor] + [d.version.clock for d in req.deps])
        txn_id = self._new_id()
        self._txns[txn_id] = txn = _Txn(conn, req.id, req.keys,
                                        now + self.config.request_timeout_s, wanted, floor)
        return self._txn_round(txn_id, txn, now)

    def _txn_round(self, txn_id: int, txn: _Txn, now: float) -> list:
        """Read every key (again) at a stamp no lower than the last one."""
        for read in txn.reads:
            self._txn_of.pop(read, None)
        txn.reads, txn.answers, txn.retry_at = {}, {}, None
        ring = self.ring
        if ring is None or not ring.serving:
            self._txn_park(txn, now, self.config.ring_refresh_s)
            return self._want_ring(now)
        if not self._floor_from_store(txn, now):
            return self._txn_wait_for_floor(txn_id, txn, now)
        if not txn.at:  # (a round again keeps it, or the horizon's: any one will do)
            txn.at = max(txn.floor, self.store_clock_us)
        if self.config.unsafe_independent_txn_reads:  # as stale as the session allows
            txn.at = txn.floor
        txn.epoch, txn.sent_at = ring.epoch, now
        txn.rounds += 1
        self.counters["txn_rounds"] += 1
        keys = txn.keys[:1] if self.config.unsafe_independent_txn_reads else txn.keys
        return [self._txn_read(txn_id, txn, key) for key in keys]

    def _txn_read(self, txn_id: int, txn: _Txn, key: str) -> Send:
        read = self._new_id()
        txn.reads[read] = key
        self._txn_of[read] = txn_id
        return Send(self.ring.chain(key)[0],
                    m.SnapshotRead(read, key, txn.wanted.get(key), txn.at, txn.epoch))

    def _txn_park(self, txn: _Txn, now: float, delay: float | None = None) -> None:
        txn.retry_at = now + (self.config.retry_delay_s if delay is None else delay)

    def _txn_wait_for_floor(self, txn_id: int, txn: _Txn, now: float) -> list:
        """As a put's (``_wait_for_floor``): a floor above every clock we know of may be
        the store's; refused once the manager's reports show it is not."""
        if txn.floor_unproven_at is None:
            txn.floor_unproven_at = now
            self.counters["floor_waited"] += 1
        elif self._clock_heard_at >= txn.floor_unproven_at + self.config.floor_proof_s:
            self.counters["floor_refused"] += 1
            return self._txn_fail(txn_id, m.BAD_REQUEST,
                                  "the session's floor is ahead of every clock this "
                                  "datacenter made or saw: the store did not make it")
        self._txn_park(txn, now)
        return []

    def _txn_fail(self, txn_id: int, code: str, detail: str) -> list:
        txn = self._txns.pop(txn_id)
        for read in txn.reads:
            self._txn_of.pop(read, None)
        self.counters["txn_failed"] += 1
        return [] if txn.conn < 0 else [self._client_error(txn.conn, txn.client_id, code,
                                                           detail)]

    def _txn_again(self, txn_id: int, txn: _Txn, now: float, why: str,
                   at_least: int = 0) -> list:
        """Start the transaction again after a short pause (at once with a ``horizon``)."""
        self.counters["txn_retry_" + why.split(":")[0]] += 1
        txn.why = why
        txn.at = max(txn.at, at_least)
        if at_least:
            return self._txn_round(txn_id, txn, now)
        for read in txn.reads:
            self._txn_of.pop(read, None)
        txn.reads = {}
        self._txn_park(txn, now)
        return []

    def _on_snapshot_reply(self, src: str, msg: m.SnapshotReply, now: float) -> list:
        txn_id = self._txn_of.get(msg.op)
        txn = self._txns.get(txn_id)
        if txn is None or txn.reads.get(msg.op) != msg.key:
            self.counters["stale_reply"] += 1
            return []
        if msg.horizon > txn.at:
            return self._txn_again(txn_id, txn, now, "horizon: a head no longer holds the "
                                   "versions before the snapshot", msg.horizon)
        if msg.epoch != txn.epoch and not self.config.unsafe_independent_txn_reads:
            out = self._want_ring(now) if msg.epoch > txn.epoch else []
            return out + self._txn_again(txn_id, txn, now, "epoch: the ring changed during "
                                         "the transaction")
        if msg.version is not None:
            self._saw(msg.version)
            if msg.stable:
                self._note_stable(msg.key, msg.version)
        txn.answers[msg.key] = msg
        if len(txn.answers) < len(txn.keys):
            if self.config.unsafe_independent_txn_reads:  # the next key, at its own stamp
                txn.at = max(txn.at, self.store_clock_us, int(self.dc_time.now(now) * 1e6))
                return [self._txn_read(txn_id, txn, txn.keys[len(txn.answers)])]
            return []
        if self.config.txn_policy == "cops-gt" and not txn.second:
            # The baseline: versions of different instants are read again, all at the
            # newest of them (still at or above the floor, so the session's past is there)
            clocks = [a.version.clock for a in txn.answers.values() if a.version is not None]
            newest = max([txn.floor, *clocks])
            if any(a.version is None or a.version.clock < newest
                   for a in txn.answers.values()):
                txn.second, txn.at = True, newest
                self.counters["txn_second_rounds"] += 1
                return self._txn_round(txn_id, txn, now)
        return self._txn_done(txn_id, txn)

    def _txn_done(self, txn_id: int, txn: _Txn) -> list:
        del self._txns[txn_id]
        for read in txn.reads:
            self._txn_of.pop(read, None)
        self.counters["txn_done"] += 1
        if txn.conn < 0:
            return []
        results = tuple((key, a.found, a.value, a.version, 1, a.stable, a.seq,
                         a.collected_floor if a.version is None else None)
                        for key in txn.keys for a in (txn.answers[key],))
        return [ToClient(txn.conn, m.TxnReply(txn.client_id, results, self.config.dc,
                                              txn.at))]

    def _txn_refused(self, src: str, read: int, reason: str, epoch: int, now: float) -> list:
        """A head could not serve a read of the current round (``Error`` or ``ReadMiss``)."""
        txn_id = self._txn_of.get(read)
        txn = self._txns.get(txn_id)
        if txn is None or read not in txn.reads:
            self.counters["stale_reply"] += 1
            return []
        out = []
        if self.ring is None or epoch > self.ring.epoch or reason in (m.NOT_HEAD,
                                                                      m.WRONG_EPOCH):
            out = self._want_ring(now)
        if reason in (m.BAD_REQUEST, m.BAD_FRAME, m.UNKNOWN_OP):
            return out + self._txn_fail(txn_id, m.BAD_REQUEST, reason)
        if reason == "read_miss_unacknowledged":
            # the head waited for its Stable in vain (its update lost on the way down?): a
            # later stamp, at which a newer stable version is what counts, may be answered
            txn.at = max(txn.at, self.store_clock_us)
        if reason == "read_miss_older":
            # the session's version may have been applied after ``at`` (re-put at a new
            # head): a later stamp, still at or above the floor, finds it
            txn.at = max(txn.at, self.store_clock_us)
        return out + self._txn_again(txn_id, txn, now, f"{reason}: the head of "
                                     f"{txn.reads[read]!r} could not serve it")

    def _txn_tick(self, now: float) -> list:
        out: list = []
        for txn_id, txn in list(self._txns.items()):
            if now >= txn.deadline:
                out += self._txn_fail(txn_id, m.UNAVAILABLE, txn.why)
            elif txn.retry_at is not None and now >= txn.retry_at:
                out += self._txn_round(txn_id, txn, now)
            elif txn.reads and now - txn.sent_at >= self.config.node_timeout_s:
                self.counters["node_timeout"] += 1
                out += self._txn_again(txn_id, txn, now, "timeout: a head did not answer")
        return out

    def _txns_client_gone(self, conn: int) -> None:
        for txn in self._txns.values():
            if txn.conn == conn:
                txn.conn = -1
