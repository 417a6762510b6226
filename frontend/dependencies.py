"""What a frontend's put, attach or settle must have confirmed before it goes ahead, and
what a put tells the head about the session's past in its own DC (the theory of
operation is in ``core.py``); the bounded caches of what is known already. Split out of
``core.py`` to keep each module to one job."""

from __future__ import annotations

import collections

import attrs

from chainreaction import messages as m
from chainreaction.fields import local_deps as local_dep_pairs
from chainreaction.versions import Version


class NewestVersions:
    """Bounded map slot -> newest version known to have a property (stable, applied here):
    the property holds for every older version of that slot too. Least recently raised
    slots are forgotten first."""

    def __init__(self, limit: int) -> None:
        self._versions: collections.OrderedDict = collections.OrderedDict()
        self._limit = limit

    def note(self, slot, version: Version) -> None:
        known = self._versions.get(slot)
        if known is None or version > known:
            self._versions[slot] = version
            self._versions.move_to_end(slot)
            if len(self._versions) > self._limit:
                self._versions.popitem(last=False)

    def covers(self, slot, version: Version) -> bool:
        known = self._versions.get(slot)
        return known is not None and version <= known


class ProxyLiveness:
    """Whether the DC's proxy is worth asking what only it can tell: it answered within
    ``silence_s``, and our connection to it has not broken since (``lost``: the driver's
    ``link_down``, so a killed proxy fails what needs it at once, retryably, not
    ``silence_s`` later). Any answer (a reply, the stats asked every ``geo_stats_s``)
    makes it worth asking again."""

    def __init__(self, silence_s: float, now: float) -> None:
        self.silence_s = silence_s
        self._heard_at = now

    def heard(self, now: float) -> None:
        self._heard_at = now

    def lost(self, now: float) -> None:
        self._heard_at = min(self._heard_at, now - self.silence_s)

    def silent(self, now: float) -> bool:
        return now - self._heard_at >= self.silence_s


@attrs.frozen
class PastCheck:
    """A dependency on DC ``origin``'s log through ``seq`` (a session's ``past``)."""

    origin: int
    seq: int


@attrs.frozen
class SeenHere:
    """A dependency written in another DC that was in this DC when we served it: checked
    at its tail (its past was applied here before it came)."""

    key: str
    version: Version


@attrs.frozen
class AwaitNotice:
    """A dependency on a write of this DC that this frontend sent and its head acked
    before it was stable: the tail's ``StableNotice`` for it (or a newer version of the
    key) is on its way here, so the put waits for it instead of asking the tail with a
    ``DepCheck`` (two messages less per put of a session writing in a row). A notice
    that does not come within ``notice_wait_s`` (a tail that died, a re-driven write that
    lost its origin) turns it into a ``DepCheck``."""

    dep: m.Dep

    @property
    def key(self) -> str:
        return self.dep.key

    @property
    def version(self) -> Version:
        return self.dep.version


@attrs.frozen
class LoggedCheck:
    """A settle's dependency written in this DC: it (or a newer version of its key) must
    be in the shipping log, so the ``past`` the settle answers covers it."""

    key: str
    version: Version



def past_checks(req: m.ClientRequest, config, log_here: dict) -> list:
    """The ``past`` entries of other DCs a put or attach ``req`` must see applied here,
    beyond what this DC is known to hold (``log_here``: origin DC -> position applied
    here; ``config``: the frontend's, ``geo`` and ``dc``). Our own DC's goes with the put
    to the head (``local_deps``); a settle asks the proxy for the whole vector."""
    if not config.geo or req.op == "settle":
        return []
    return [PastCheck(dc, seq) for dc, seq in req.past
            if seq > log_here.get(dc, 0) and dc != config.dc]


def local_deps(req: m.ClientRequest, own: int) -> tuple[tuple, int]:
    """What of DC ``own`` the put ``req`` depends on, for the order of the shipping log
    (``Put.deps``, ``Put.past``): the dependencies written there (``(key, clock)``, those
    with a known log position too: the proxy turns each into the position of one entry,
    where a position in ``past`` would make receivers wait for the whole log up to it),
    and the session's ``past`` there. The written key too: a newer version does not stand
    for an older one's causal past once that one is logged (fuzz seed 11)."""
    past = dict(req.past).get(own, 0)
    # (the smallest and the largest clock per key: a session that saw two versions of a
    # key sends both, and the newer does not stand for the older one's past: session.py)
    deps = local_dep_pairs([(d.key, d.version.clock) for d in req.deps
                            if d.version.dc == own])
    return deps, past


def logged_checks(req: m.ClientRequest, own: int, known: NewestVersions) -> list:
    """A settle's dependencies written in DC ``own`` that are not known to be in its
    shipping log (nor have a log position): the ``past`` it answers must cover them."""
    newest: dict[str, Version] = {}
    for d in req.deps:
        if (d.version.dc == own and not d.seq and not known.covers(d.key, d.version)
                and (d.key not in newest or d.version > newest[d.key])):
            newest[d.key] = d.version
    return [LoggedCheck(key, version) for key, version in newest.items()]
