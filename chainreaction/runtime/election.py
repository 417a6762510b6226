"""One manager's seat in its DC's election, through etcd (docs/protocol.md §5, "Standby
managers"). No consensus of our own: etcd's.

* **Campaign.** Create the key ``PREFIX/leader`` attached to a lease of ``ttl_s``; whoever
  created it leads while the lease lives. The others keep trying every ``poll_s``: when the
  leader dies its lease ends within ``ttl_s`` and the key goes with it.
* **Hold.** Renew the lease every third of its TTL. It ends when etcd says it expired, or
  when we could not renew it for most of a TTL (etcd may have expired it meanwhile):
  ``LostLeadership``.
* **Commit.** The manager's state (ring, custody, store ids) is one key,
  ``PREFIX/state``, put in a transaction that holds only while the leader key is still the
  one our campaign created (its create revision). A deposed leader (paused, cut off)
  cannot overwrite it, and since a manager sends nothing that follows a save before the
  save is committed (the driver's group commit), it cannot publish a ring either. The
  next leader continues from the committed state: epochs never fork or go backwards.
"""

from __future__ import annotations

import logging
import time

import cbor2
import trio

from .etcd import EtcdClient, EtcdUnavailable

log = logging.getLogger(__name__)


class LostLeadership(Exception):
    """Our lease ended, or a commit found another leader: step down."""


class Leadership:
    def __init__(self, client: EtcdClient, prefix: str, name: str, ttl_s: int = 2,
                 poll_s: float = 0.25, clock=time.monotonic) -> None:
        self.client = client
        self.name = name
        self.leader_key = f"{prefix.rstrip('/')}/leader".encode()
        self.state_key = f"{prefix.rstrip('/')}/state".encode()
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.clock = clock
        self.lease: int | None = None
        self.revision = 0  # the create revision of our leader key while we lead
        self._renewed_at = float("-inf")  # when the last renewal that succeeded was asked
        self.commits = 0

    @property
    def leading(self) -> bool:
        return self.revision != 0

    async def campaign(self) -> None:
        """Return once we lead."""
        while True:
            try:
                await self._renew_or_grant()
                created, revision = await self.client.create(
                    self.leader_key, self.name.encode(), self.lease)
                if created:
                    self.revision = revision
                    log.warning("%s leads (revision %d)", self.name, revision)
                    return
            except EtcdUnavailable as exc:
                log.warning("campaign of %s: %s", self.name, exc)
            await trio.sleep(self.poll_s)

    async def _renew_or_grant(self) -> None:
        """A live lease to campaign with (renewed every third of its TTL)."""
        asked = self.clock()
        if self.lease is not None and asked - self._renewed_at < self.ttl_s / 3:
            return
        if self.lease is not None and await self.client.keepalive(self.lease) > 0:
            self._renewed_at = asked
            return
        self.lease, self.ttl_s = await self.client.grant(self.ttl_s)
        self._renewed_at = asked

    async def hold(self) -> None:
        """Keep the lease while we lead; raise ``LostLeadership`` when it may have ended."""
        while True:
            await trio.sleep(self.ttl_s / 3)
            asked = self.clock()
            try:
                left = await self.client.keepalive(self.lease)
            except EtcdUnavailable as exc:
                if self.clock() - self._renewed_at > self.ttl_s * 0.75:
                    raise LostLeadership(f"lease not renewed for {self.ttl_s * 0.75:g} s: "
                                         f"{exc}") from None
                continue
            if left <= 0:
                raise LostLeadership("our lease expired")
            self._renewed_at = asked

    async def load(self) -> dict | None:
        """The state the last leader committed (None: no manager ever committed one)."""
        kv = await self.client.get(self.state_key)
        if kv is None:
            return None
        state = cbor2.loads(kv.value)
        if not isinstance(state, dict):
            raise ValueError(f"{self.state_key!r} in etcd holds no manager state")
        return state

    async def commit(self, state: dict) -> None:
        if not self.leading:
            raise LostLeadership("not leading")
        if not await self.client.put_if_created_at(self.state_key, cbor2.dumps(state),
                                                   self.leader_key, self.revision):
            self.revision = 0
            raise LostLeadership("another manager leads: our commit was refused")
        self.commits += 1

    async def resign(self) -> None:
        """Give up the seat now (its key goes with the lease), so a standby need not
        wait for the lease to run out. Best effort: it runs out anyway."""
        lease, self.lease, self.revision = self.lease, None, 0
        if lease is None:
            return
        with trio.move_on_after(1.0):
            try:
                await self.client.revoke(lease)
            except EtcdUnavailable:
                pass


class CommittedState:
    """The manager's ``StateFile`` while it leads: a save is remembered and counted
    (``writes``); the driver's group commit calls ``sync`` before anything the manager
    said after the save leaves, which commits the newest state under the leadership."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.writes = 0
        self._pending: dict | None = None

    def load(self) -> dict | None:
        return None  # (a promoted manager is given what was committed: ``promote``)

    def save(self, state: dict) -> None:
        self._pending = state
        self.writes += 1

    async def sync(self) -> None:
        state, self._pending = self._pending, None
        if state is not None:
            await self.leadership.commit(state)
