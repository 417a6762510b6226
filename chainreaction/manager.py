"""Per-datacenter manager: sans-IO core for membership and the ring.

Theory of operation
-------------------
Nodes and frontends send a ``Heartbeat`` every interval, carrying the epoch of the ring
they know. The manager

* adds a node it has not heard of (or that restarted at a new address) to the ring;
* removes a node silent for ``failure_timeout_s``, unless the silence is the manager's own:
  after a gap between two of its ticks longer than half the timeout (it was paused or
  starved and read nobody's heartbeats), every peer's silence starts again from now. Without
  that, a manager resuming from a pause evicted every member at once and rebuilt the ring
  one heartbeat at a time, each intermediate ring handing all ranges to the few nodes in it
  (a total outage of every chain, as far as the nodes can tell);
* publishes every change as a new ``Ring`` with ``epoch + 1`` to every node and frontend
  (``RingUpdate``, with the previous ring so a joining node knows whom to copy from);
* answers a heartbeat or ``GetRing`` that shows an older epoch with the current ring, so a
  process that missed a broadcast catches up on its next heartbeat.

**Clocks.** Every heartbeat carries the sender's clock (``sent_at_us``) and the largest
hybrid clock it has made or seen (``clock_us``). The manager measures each process's
offset (``sent_at_us`` minus its own clock on arrival: network delay only makes a clock look
behind) and answers each heartbeat with ``HeartbeatAck``: how far the sender runs ahead of
the lower median offset of the DC's live processes and its own (``ahead_us``), and the
largest clock any of them reported (``store_clock_us``). A median, so neither one bad
clock nor the manager's own shifts the reference; the lower one, so a tie holds clocks
back rather than letting one run ahead. What the processes do with it: docs/protocol.md
§3.1 ("Clocks").

A node silent for the failure timeout is marked *down*, not removed: its tokens stay and
chains skip it, and when it heartbeats again it is back in its old chains. With every
ring the manager hands out *custody*, per arc the nodes that hold it completely
(``custody.py``): a chain member that holds an arc serves it at once (after a restart
too), one that does not copies it from a holder first, and an arc whose holders are all
down waits for one of them (requests for it get ``unavailable``). Nodes report the arcs
they still copy with every heartbeat, which is how a copier becomes a holder; a node whose
store id changed (an empty disk) holds nothing.

State. With a ``StateFile`` (``--data-dir``) the ring, custody and store ids are saved on
every change, and a restarted manager continues from them: it waits ``startup_grace_s``
to hear from the live nodes, then marks the silent ones down. Without one, a restarted
manager starts from an empty ring (every node it hears counts as a holder of its chains),
and publishes a ring whose epoch is above every epoch the nodes reported, so epochs never
go backwards.

**Membership changes** (``MembershipChange``, ``chainreaction admin`` and ``cluster
remove-node``). Removing a node drains it first: it stays in the ring marked down (chains
skip it; custody keeps it as a holder only of arcs no chain member holds), so its ranges
are copied to the nodes that take its place, from holders, itself among them, while it
still serves copies. Once every chain holds its arcs completely and no arc names it, it
leaves the ring (the next ring has no token of it); a heartbeat of its store after that
is answered ``Error removed``, on which the node deletes what it holds and stops. A fresh
store under that name (an empty data dir) joins as a new node.

**Joining** (ring.py, "learner"). A node new to a ring that serves, or back on an empty
disk, is a *learner* until it holds every arc whose chain it is in: chains place it just
before their tail, so it copies its arcs while the writes flow through it, and no put or
dependency check waits for its copy. Once custody lists it for all of them, the next
ring has it as a plain member (it may then be head or tail: it holds what they hold).

**Standby** (``--managers 3``, through etcd: ``runtime/election.py``). A standby
core hears every member's heartbeats (members heartbeat every manager of their DC) and
tracks who is alive, but answers nothing and publishes nothing. When its process wins the
election it is ``promote``d with the state the last leader committed to etcd: it knows
already who is alive, so a node that died while no manager was active is marked down on
the first ring it publishes. Every save is committed to etcd, fenced by the leadership,
before anything the core says after it leaves the process (the driver's group commit), so
a deposed leader can publish no ring: epochs never fork and never go backwards.
"""

from __future__ import annotations


from typing import Callable

import attrs

from . import custody
from . import messages as m
from .core import Core
from .effects import Send
from .links import BrokenLinks
from .ring import MAX_WEIGHT, Member, Ring
from .state_file import StateFile


@attrs.frozen
class ManagerConfig:
    replication: int = 3
    vnodes: int = 16
    failure_timeout_s: float = 1.5
    startup_grace_s: float = 0.0
    tick_s: float = 0.05  # how often silence is checked (failure detection)


@attrs.define(slots=True)
class _Peer:
    role: str
    addr: str
    incarnation: int
    last_seen: float
    offset_us: int | None = None  # its clock minus ours, at its last heartbeat
    placement: tuple = ("", "", 1)  # a node's (host, zone, weight)
    report: dict = attrs.Factory(dict)  # its last heartbeat's keys, unstable, visibility
    since: float = 0.0  # heard without a break (silence, restart) since then


class ManagerCore(Core):
    role = "manager"

    def __init__(self, config: ManagerConfig, now: float, name: str = "manager",
                 monotonic: Callable[[], float] | None = None,
                 state: StateFile | None = None, standby: bool = False) -> None:
        super().__init__(name, now, monotonic=monotonic)
        self.standby = standby  # hears heartbeats, says nothing (``promote``)
        self._started = now
        self.config = config
        self.ring = Ring(0, (), config.replication, config.vnodes)
        self.previous: Ring | None = None
        self.custody: tuple = ()  # per arc of ``ring``: the nodes holding it (custody.py)
        self._store_ids: dict[str, int] = {}
        self._state = state
        self._peers: dict[str, _Peer] = {}
        self._epoch_floor = 0
        self._force_publish = False  # custody lost a holder: every node must re-plan
        self._grace_until = now + config.startup_grace_s
        self._dirty = False
        self._last_tick = now
        self._store_clock_us = 0  # the largest hybrid clock any process reported
        # links.py: a broken link between two live nodes leaves one of them out
        self._links = BrokenLinks(config.failure_timeout_s, 2 * config.failure_timeout_s)
        self._left_out: frozenset = frozenset()
        self._leaving: dict[str, float] = {}  # nodes being drained -> since when
        self._removed: dict[str, int] = {}  # nodes removed -> the store id they had
        # removed nodes back under their name on a new store -> the old store's id: its
        # heartbeats read after the new one's (another connection) are still refused
        self._retired: dict[str, int] = {}
        self._just_removed: list[str] = []  # told with the next ring (``_publish_if_dirty``)
        self._learners: set[str] = set()  # joined, holding nothing yet (ring.py)
        self._handlers = {m.Heartbeat: self._on_heartbeat, m.GetRing: self._on_get_ring,
                          m.MembershipChange: self._on_membership_change}
        self.timers.add("housekeeping", self._housekeeping, now, delay=config.tick_s)
        saved = state.load() if state is not None else None
        if saved is not None:
            self._restore(saved)

    # -- durable state ----------------------------------------------------------------------

    def _restore(self, saved: dict) -> None:
        """Continue from the saved ring: after the start-up grace, members we have not
        heard from are marked down (``_dirty``)."""
        self.ring = Ring.coerce(saved["ring"])
        self.previous = None if saved.get("previous") is None else Ring.coerce(saved["previous"])
        self.custody = custody.from_wire(saved["custody"])
        self._store_ids = {name: int(sid) for name, sid in saved["store_ids"]}
        self._leaving = {name: 0.0 for name in saved.get("leaving", ())}
        self._removed = {name: int(sid) for name, sid in saved.get("removed", ())}
        self._learners = set(saved.get("learners", ()))
        self._epoch_floor = self.ring.epoch
        self._dirty = bool(self.ring.members)
        self.counters["state_restored"] += 1

    def _save(self) -> None:
        if self._state is None:
            return
        self._state.save({
            "ring": self.ring.to_wire(),
            "previous": None if self.previous is None else self.previous.to_wire(),
            "custody": custody.to_wire(self.custody),
            "store_ids": sorted(self._store_ids.items()),
            "leaving": sorted(self._leaving),
            "removed": sorted(self._removed.items()),
            "learners": sorted(self._learners),
        })
        self.counters["state_saved"] += 1

    def promote(self, saved: dict | None, state: StateFile | None, now: float) -> list:
        """A standby becomes the DC's manager, continuing from ``saved`` (the state the last
        one committed) and saving to ``state`` from now on. It publishes once it has
        heard every live member (a failure timeout after it started listening), marking
        the silent ones down."""
        assert self.standby, "only a standby is promoted"
        self.standby = False
        self._state = state
        floor = self._epoch_floor
        if saved is not None:
            self._restore(saved)
        self._epoch_floor = max(floor, self._epoch_floor)
        self._grace_until = max(now, self._started + self.config.failure_timeout_s,
                                self._grace_until)
        self._dirty = True
        self.counters["promoted"] += 1
        return self._publish_if_dirty(now)

    def ring_update(self) -> m.RingUpdate:
        return m.RingUpdate(self.ring, self.previous, custody.to_wire(self.custody),
                            tuple(sorted(self._store_ids.items())))

    def _on_get_ring(self, src: str, msg: m.GetRing, now: float) -> list:
        if self.standby or self.ring.epoch <= msg.epoch:
            return []  # nothing newer to tell (e.g. still in the start-up grace)
        return [Send(src, self.ring_update())]

    def _housekeeping(self, now: float) -> list:
        self.timers.after("housekeeping", self.config.tick_s, now)
        return self.tick(now)

    def tick(self, now: float) -> list:
        """Failure detection: evict members silent for the failure timeout."""
        stalled = now - self._last_tick > self.config.failure_timeout_s / 2
        self._last_tick = now
        if stalled:
            self.counters["own_stall_forgiven"] += 1
            for peer in self._peers.values():
                peer.last_seen = max(peer.last_seen, now)
        for name, peer in list(self._peers.items()):
            if now - peer.last_seen > self.config.failure_timeout_s:
                del self._peers[name]
                self._links.forget(name)
                self.counters[f"{peer.role}_failed"] += 1
                if peer.role == "node":
                    self._dirty = True
        if self.standby:
            return []
        self._finish_removals()
        self._graduate()
        live = {name: p.since for name, p in self._peers.items() if p.role == "node"}
        left_out = self._links.left_out(set(live), now, live)
        if left_out != self._left_out:
            self.counters["left_out_for_links_changed"] += 1
            self._left_out, self._dirty = left_out, True
        return self._publish_if_dirty(now)

    def stats(self) -> dict:
        median = self._median_offset_us()
        return {
            "manager_state": "standby" if self.standby else "active",
            "epoch": self.ring.epoch,
            "nodes": [n for n, p in sorted(self._peers.items()) if p.role == "node"],
            "frontends": [n for n, p in sorted(self._peers.items()) if p.role == "frontend"],
            # how far each process's clock ran ahead of the DC's median (negative: behind)
            "clock_offset_ms": {n: round((p.offset_us - median) / 1000)
                                for n, p in sorted(self._peers.items())
                                if p.offset_us is not None},
            "store_clock_us": self._store_clock_us,
            "down": sorted(self.ring.down),
            "arcs_without_holder": custody.unheld_arcs(self.custody),
            "leaving": sorted(self._leaving),
            "removed": sorted(self._removed),
            "learners": sorted(self._learners),
            **self._links.stats(),
            **self.counters,
        }

    def _median_offset_us(self) -> int:
        """The lower median of every live process's clock offset, ours (0) included."""
        offsets = sorted([0] + [p.offset_us for p in self._peers.values()
                                if p.offset_us is not None])
        return offsets[(len(offsets) - 1) // 2]

    def _on_heartbeat(self, src: str, msg: m.Heartbeat, now: float) -> list:
        self._epoch_floor = max(self._epoch_floor, msg.epoch)
        live_at = self.live_elsewhere(msg.name, msg.addr, now)
        if live_at is not None:
            # A second process under a live member's name (an operator's mistake): were we
            # to follow it, the ring would flip between the two addresses. Refused, told at
            # its own address, until the first one falls silent.
            self.counters["duplicate_name_refused"] += 1
            return [Send(f"{msg.name}@{msg.addr}", m.Error(
                0, m.DUPLICATE_NAME, f"another {msg.role} named {msg.name} is live at "
                f"{live_at}: stop this one ({msg.addr}) or give it another --name",
                self.ring.epoch))]
        if (msg.role == "node" and msg.store_id
                and self._retired.get(msg.name) == msg.store_id):
            self.counters["removed_node_refused"] += 1  # (the new store ignores this one)
            return [Send(msg.name, self._removed_error(msg.name, msg.store_id))]
        if msg.role == "node" and msg.name in self._removed:
            if msg.store_id in (0, self._removed[msg.name]):
                self.counters["removed_node_refused"] += 1
                out = [Send(msg.name, self._removed_error(msg.name))]
                if msg.epoch < self.ring.epoch:  # (its orphans go to the heads first)
                    out.append(Send(msg.name, self.ring_update()))
                return out
            # (an empty store: it joins as a new node)
            self._retired[msg.name] = self._removed.pop(msg.name)
            self.counters["removed_node_rejoined"] += 1
            self._save()
        peer = self._peers.get(msg.name)
        placement = (msg.host, msg.zone, max(1, min(msg.weight, MAX_WEIGHT)))
        if (peer is None or peer.addr != msg.addr or peer.role != msg.role
                or peer.placement != placement):
            self._peers[msg.name] = _Peer(msg.role, msg.addr, msg.incarnation, now,
                                          placement=placement, since=now)
            self.counters[f"{msg.role}_joined"] += 1
            if (msg.role == "node" and msg.name not in self.ring.all_names
                    and self.ring.serving):
                self._learners.add(msg.name)  # (holds nothing: it learns first)
            if msg.role == "node" or (peer is not None and peer.role == "node"):
                self._dirty = True
            peer = self._peers[msg.name]
        else:
            if peer.incarnation != msg.incarnation:
                self.counters[f"{msg.role}_restarted"] += 1
                peer.incarnation = msg.incarnation
                peer.since = now  # (its peers need its lease again: links.py)
            peer.last_seen = now
        if msg.sent_at_us:
            peer.offset_us = msg.sent_at_us - int(now * 1_000_000)
        peer.report = {"keys": msg.key_count, "unstable": msg.unstable,
                       "visibility_ms": dict(msg.visibility_ms)}
        self._store_clock_us = max(self._store_clock_us, msg.clock_us)
        if self.standby:
            self._dirty = False  # (the ring it publishes once promoted is built afresh)
            return []
        if msg.role == "node":
            self._note_custody(msg)
            self._links.report(msg.name, msg.unreachable, now)
        out = self._publish_if_dirty(now)
        if not out and msg.epoch < self.ring.epoch:
            out.append(Send(msg.name, self.ring_update()))
        elif msg.epoch == self.ring.epoch and self.ring.epoch:
            ahead_us = 0
            if peer.offset_us is not None:
                ahead_us = max(0, peer.offset_us - self._median_offset_us())
            out.append(Send(msg.name, m.HeartbeatAck(self.ring.epoch, msg.sent_at_us,
                                                     ahead_us, self._store_clock_us)))
        return out

    def live_elsewhere(self, name: str, addr: str, now: float) -> str | None:
        """The address of a live member named ``name`` other than ``addr`` (heard within
        the failure timeout; while we start, a ring member not heard yet counts as live),
        or None. The driver's transport asks too, before it lets a connection take a
        name."""
        peer = self._peers.get(name)
        if peer is not None:
            live = now - peer.last_seen < self.config.failure_timeout_s
            return peer.addr if live and peer.addr != addr else None
        if now < self._grace_until and self.ring is not None:
            member = next((mm for mm in self.ring.members if mm.name == name), None)
            if member is not None and member.addr != addr:
                return member.addr
        return None

    def _note_custody(self, msg: m.Heartbeat) -> None:
        """What a node's heartbeat tells about what it holds: a new store id means an empty
        disk (it holds nothing: every node re-plans its copies with the next ring); an arc
        of the current ring it serves without copying, it holds."""
        known = self._store_ids.get(msg.name)
        if msg.store_id and known != msg.store_id:
            self._store_ids[msg.name] = msg.store_id
            if known is not None:
                self.custody = custody.forget(self.custody, msg.name)
                self.counters["replica_replaced"] += 1
                if msg.name in self.ring.all_names and self.ring.serving:
                    self._learners.add(msg.name)  # (an empty disk: it learns again)
                self._force_publish = True
                self._dirty = True
            self._save()
            return  # (what it serves counts once it has a ring naming its new store)
        if msg.epoch == self.ring.epoch and msg.store_id == self._store_ids.get(msg.name):
            updated = custody.observe(self.custody, self.ring, msg.name, set(msg.syncing))
            if updated is not None:
                if custody.took_over(self.custody, updated, self.ring):
                    # it waits for a ring that lists it before it acts (state_transfer.py)
                    self._force_publish = self._dirty = True
                self.custody = updated
                self.counters["custody_gained"] += 1
                self._save()
                self._finish_removals()
                self._graduate()

    def _next_members(self) -> tuple[tuple, frozenset]:
        """Every member the ring had (at the address it heartbeats from now) and every node
        we hear, sorted; the ones we do not hear are down."""
        live = {name: p for name, p in self._peers.items()
                if p.role == "node" and name not in self._removed}
        known = {member.name: member for member in self.ring.members
                 if member.name not in self._removed}
        known.update((name, Member(name, p.addr, *p.placement)) for name, p in live.items())
        members = tuple(known[name] for name in sorted(known))
        return members, frozenset(name for name in known if name not in live
                                  or name in self._left_out or name in self._leaving)

    def _publish_if_dirty(self, now: float) -> list:
        if not self._dirty or now < self._grace_until:
            return []
        self._dirty = False
        members, down = self._next_members()
        self._learners &= {mm.name for mm in members}
        learners = frozenset(self._learners - set(self._leaving))
        if (members == self.ring.members and down == self.ring.down
                and learners == self.ring.learners and not self._force_publish):
            return []
        self._force_publish = False
        epoch = max(self.ring.epoch, self._epoch_floor) + 1
        ring = Ring(epoch, members, self.config.replication, self.config.vnodes, down,
                    learners)
        self.custody = custody.carry(self.ring, self.custody, ring)
        self.previous, self.ring = self.ring, ring
        # Epochs never go backwards, not even across our restarts (the floor is the
        # largest epoch any member reported): a node ignores rings not newer than its own.
        assert self.ring.epoch > self.previous.epoch and self.ring.epoch > self._epoch_floor
        self.counters["ring_published"] += 1
        if custody.unheld_arcs(self.custody):
            self.counters["rings_with_unheld_arcs"] += 1
        self._save()
        update = self.ring_update()
        out = [Send(name, update) for name in sorted(self._peers)]
        for name in self._just_removed:  # (at once, not at their next heartbeat)
            out += [Send(name, update), Send(name, self._removed_error(name))]
        self._just_removed.clear()
        return out

    def _removed_error(self, name: str, store_id: int | None = None) -> m.Error:
        # ``op`` names the store removed: a removal answered to a heartbeat the old store
        # sent (read late, e.g. after a pause) may reach a new store under that name,
        # which must not delete itself (fuzz seed 7800045)
        if store_id is None:
            store_id = self._removed.get(name, 0)
        return m.Error(store_id, m.REMOVED, f"{name} was removed from the "
                       "ring: it deletes what it holds and stops (to join again, start it on "
                       "an empty --data-dir)", self.ring.epoch)

    # -- membership changes ---------------------------------------------------------------

    def _on_membership_change(self, src: str, msg: m.MembershipChange, now: float) -> list:
        """An operator's ``remove`` (drain), ``cancel`` or ``status``; see the module's
        docstring."""
        def refuse(code: str, detail: str) -> list:
            self.counters["membership_change_refused"] += 1
            return [Send(src, m.Error(msg.op, code, detail, self.ring.epoch))]

        if self.standby:
            return refuse(m.NOT_READY, "this manager is a standby: ask the active one")
        if msg.action == "remove" and msg.name not in self._leaving:
            if msg.name not in self.ring.all_names:
                return refuse(m.BAD_REQUEST, f"{msg.name!r} is not a node of the ring "
                              f"(members: {', '.join(self.ring.all_names) or 'none'})")
            if not [n for n in self.ring.names if n != msg.name and n not in self._leaving]:
                return refuse(m.BAD_REQUEST, f"removing {msg.name} would leave no node "
                              "serving: add one first")
            self._leaving[msg.name] = now
            self.counters["node_drain_started"] += 1
            self._dirty = True
            self._save()
        elif msg.action == "cancel" and msg.name:
            if msg.name not in self._leaving:
                return refuse(m.BAD_REQUEST, f"{msg.name!r} is not being removed")
            del self._leaving[msg.name]
            self.counters["node_drain_cancelled"] += 1
            self._dirty = True
            self._save()
        out = self._publish_if_dirty(now)
        return out + [Send(src, m.StatsReply(msg.op, self.membership_status()))]

    def membership_status(self) -> dict:
        """What a membership change waits for: ``arcs_moving`` counts the arcs some chain
        member of which does not hold yet (copying)."""
        moving = 0
        if len(self.custody) == self.ring.arc_count:
            moving = sum(1 for arc in range(self.ring.arc_count)
                         if not set(self.ring.chain_of_arc(arc)) <= self.custody[arc])
        return {"epoch": self.ring.epoch, "members": list(self.ring.all_names),
                "serving": list(self.ring.names), "leaving": sorted(self._leaving),
                "removed": sorted(self._removed),
                "down": sorted(self.ring.down - set(self._leaving)),
                "arcs": self.ring.arc_count, "arcs_moving": moving,
                "arcs_without_holder": custody.unheld_arcs(self.custody)}

    def _graduate(self) -> None:
        """Learners that hold every arc whose chain they are in become plain members."""
        if not self._learners or len(self.custody) != self.ring.arc_count:
            return
        ready = set(self._learners) - set(self._leaving)
        for arc in range(self.ring.arc_count):
            for name in ready & set(self.ring.chain_of_arc(arc)):
                if name not in self.custody[arc]:
                    ready.discard(name)
        ready = {n for n in ready if n in self.ring}  # (not a silent one: in its chains)
        if ready:
            self._learners -= ready
            self.counters["learners_graduated"] += len(ready)
            self._dirty = True
            self._save()

    def _finish_removals(self) -> None:
        """A draining node leaves the ring once no arc names it as a holder and every
        chain holds its arcs completely (its ranges have moved)."""
        if not self._leaving or self.standby or len(self.custody) != self.ring.arc_count:
            return
        if any(not set(self.ring.chain_of_arc(arc)) <= self.custody[arc]
               for arc in range(self.ring.arc_count)):
            return
        for name in sorted(self._leaving):
            if any(name in holders for holders in self.custody):
                continue
            # Its tokens go: arcs merge, and a merged arc's holders are the nodes that held
            # every part of it (custody.carry). Parts held by different nodes (some down)
            # would leave it without a holder, and a node holding one part would take the
            # rest over empty (fuzz seed 7660059): wait until they all hold all of it.
            members = tuple(mm for mm in self.ring.members if mm.name != name)
            after = Ring(self.ring.epoch + 1, members, self.ring.replication,
                         self.ring.vnodes, self.ring.down - {name},
                         self.ring.learners - {name})
            if custody.unheld_arcs(custody.carry(self.ring, self.custody, after)) > (
                    custody.unheld_arcs(self.custody)):
                self.counters["removal_waits_for_holders"] += 1
                continue
            del self._leaving[name]
            self._just_removed.append(name)
            self._removed[name] = self._store_ids.pop(name, 0)
            self._peers.pop(name, None)
            self._links.forget(name)
            self.counters["node_removed"] += 1
            self._dirty = True
        if self._dirty:
            self._save()
