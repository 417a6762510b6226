"""A backup's scan at the heads (``SnapshotScan``, snapshots.py): every key a head leads, as
it was at one stamp, paged, with the stamp's versions pinned while the backup runs."""

from __future__ import annotations

from chainreaction import messages as m
from chainreaction.snapshots import PIN_S

from .test_node_core import Chain, put


def written(c: Chain, key: str, value: bytes | None, now: float, rid: bytes):
    """A put at the key's head, carried down the whole chain (stable at the tail)."""
    head = c.ring.chain(key)[0]
    outside = c.send(head, c.nodes[head].handle("fe", put(key=key, value=value, rid=rid),
                                                now), now)
    (ack,) = [e.msg for e in outside if isinstance(e.msg, m.PutAck)]
    return ack.version


def scan(node, at, after="", limit=1000, now=1.0, epoch=1) -> m.SnapshotScanReply:
    (out,) = node.handle("backup", m.SnapshotScan(9, at, after, limit, epoch), now)
    assert out.to == "backup"
    return out.msg


def scan_all(c: Chain, at, limit=1000, now=1.0) -> dict:
    """What a backup gathers: every node paged to its end."""
    found = {}
    for node in c.nodes.values():
        after = ""
        while True:
            page = scan(node, at, after, limit, now)
            assert not page.wait and page.horizon == 0
            for key, value, _version in page.scanned:
                assert key not in found  # one head per key
                found[key] = value
            after = page.after
            if page.done:
                break
    return found


def test_a_scan_returns_each_key_once_as_it_was_at_the_stamp_from_its_head():
    c = Chain()
    keys = {head: c.key_with_chain(chain) for head, chain in
            (("a", ["a", "b", "c"]), ("b", ["b", "c", "a"]), ("c", ["c", "a", "b"]))}
    first = {h: written(c, k, b"1" + k.encode(), 1.0, b"r1" + k.encode())
             for h, k in keys.items()}
    at = max(v.clock for v in first.values())
    written(c, keys["a"], b"later", 2.0, b"r2")  # after the stamp: not in it
    written(c, keys["b"], None, 2.0, b"r3")  # deleted after it: still in it
    gone = next(f"g{i}" for i in range(10_000) if c.ring.chain(f"g{i}")[0] == "a")
    written(c, gone, b"x", 0.5, b"r4")
    written(c, gone, None, 0.6, b"r5")  # deleted before it: not in it
    assert scan_all(c, at, now=3.0) == {k: b"1" + k.encode() for k in keys.values()}
    assert scan_all(c, at, limit=1, now=3.0) == scan_all(c, at, now=3.0)  # paged alike
    newest = scan_all(c, int(3.5e6), now=3.5)
    assert newest == {keys["a"]: b"later", keys["c"]: b"1" + keys["c"].encode()}
    # Its clock moved past the stamp: what a head applies now is after the snapshot.
    late = written(c, keys["c"], b"late", 3.6, b"r6")
    assert late.clock > int(3.5e6) and scan_all(c, int(3.5e6), now=3.7) == newest


def test_a_stamp_being_scanned_keeps_its_versions_past_the_retention_until_the_pin_lapses():
    c = Chain(snapshot_retention_s=1.0)
    key = c.key_with_chain(["a", "b", "c"])
    v1 = written(c, key, b"one", 1.0, b"r1")
    head = c.nodes["a"]
    assert [i[1] for i in scan(head, v1.clock, now=1.2).scanned] == [b"one"]
    written(c, key, b"two", 1.5, b"r2")
    for now in (3.0, 1.2 + PIN_S - 0.5):  # past the retention, within the pin
        head.tick(now)
        assert [i[1] for i in scan(head, v1.clock, now=now).scanned] == [b"one"]
    head.tick(now + PIN_S + 0.1)  # no page for longer than the pin: collected
    refused = scan(head, v1.clock, now=now + PIN_S + 0.2)
    assert refused.scanned == () and refused.horizon > v1.clock and not refused.done


def test_a_scan_on_another_epoch_is_refused():
    c = Chain()
    (out,) = c.nodes["a"].handle("backup", m.SnapshotScan(9, 10, "", 10, 7), 1.0)
    assert isinstance(out.msg, m.Error) and out.msg.code == m.WRONG_EPOCH


def test_with_k2_a_version_maybe_not_acknowledged_makes_the_page_wait_not_skip():
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    head = c.nodes["a"]
    head.handle("fe", m.Put(1, b"r1", key, b"v", 0, 1), 1.0)  # not passed on yet
    page = scan(head, int(2e6), now=2.0)
    assert page.wait and not page.done and page.scanned == () and page.after == ""
