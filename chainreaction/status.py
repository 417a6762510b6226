"""The DC's status page (issue 18): what the manager knows, as JSON (``status(manager,
now)``, pure data) and a page that renders it and refreshes itself every second. The
manager's HTTP port serves both (``/status``, ``/status.json``; runtime/metrics.py)."""

from __future__ import annotations

import collections

from .ring import HASH_SPACE


def status(manager, now: float) -> dict:
    """The ring and its epoch, every chain with its share of the keys, every process the
    manager hears (role, health, clock), the counters that say something went wrong."""
    ring = manager.ring
    shares: dict = collections.Counter()
    for arc in range(ring.arc_count):
        start, end = ring.arc_range(arc)
        span = (end - start) % HASH_SPACE or HASH_SPACE  # (one token: the whole circle)
        shares[ring.chain_of_arc(arc)] += span / HASH_SPACE
    roles: dict = collections.defaultdict(lambda: {"head": 0.0, "tail": 0.0, "in": 0.0})
    for chain, share in shares.items():
        if chain:
            roles[chain[0]]["head"] += share
            roles[chain[-1]]["tail"] += share
            for name in chain:
                roles[name]["in"] += share
    stats = manager.stats()
    members = [{
        "name": m.name, "addr": m.addr, "host": m.host, "zone": m.zone, "weight": m.weight,
        "down": m.name in ring.down,
        "head_share": round(roles[m.name]["head"], 4),
        "tail_share": round(roles[m.name]["tail"], 4),
        "key_share": round(roles[m.name]["in"], 4),
        **_reported(manager, m.name)} for m in ring.members]
    processes = [{
        "name": name, "role": p.role, "addr": p.addr,
        "heard_s_ago": round(max(0.0, now - p.last_seen), 2),
        "healthy": now - p.last_seen < manager.config.failure_timeout_s,
        "clock_offset_ms": stats["clock_offset_ms"].get(name)}
        for name, p in sorted(manager._peers.items())]
    troubles = {k: v for k, v in sorted(manager.counters.items()) if any(
        word in k for word in ("refused", "unheld", "replaced", "stall", "broken")) and v}
    return {
        "manager": manager.name, "state": stats["manager_state"], "epoch": ring.epoch,
        "replication": ring.replication, "members": members, "processes": processes,
        "chains": [{"chain": list(chain), "share": round(share, 4)}
                   for chain, share in sorted(shares.items(), key=lambda kv: -kv[1])],
        "arcs_without_holder": stats["arcs_without_holder"], "troubles": troubles,
        "leaving": stats["leaving"], "removed": stats["removed"],
        "learners": sorted(ring.learners),
        # remote visibility into this DC: the median ms from a write at its origin DC
        # until it is visible here, per origin (this DC's proxy's; its row of the matrix)
        "visibility_ms": {str(dc): ms for p in manager._peers.values() if p.role == "proxy"
                          for dc, ms in p.report.get("visibility_ms", {}).items()}}


def _reported(manager, name: str) -> dict:
    """What a node's last heartbeat said: its key count, writes not yet stable."""
    peer = manager._peers.get(name)
    report = peer.report if peer is not None else {}
    return {"keys": report.get("keys"), "unstable": report.get("unstable")}


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ChainReaction DC status</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222 }
table { border-collapse: collapse; margin: 0.5em 0 1.5em }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left }
th { background: #f3f3f3 } .bad { color: #b00; font-weight: bold } .ok { color: #070 }
</style></head>
<body><h1>ChainReaction: <span id="title">...</span></h1>
<p id="summary">loading /status.json ...</p>
<h2>Nodes of the ring</h2><table id="members"></table>
<h2>Remote writes: how long until visible here</h2><table id="visibility"></table>
<h2>Chains (head first) and their share of the keys</h2><table id="chains"></table>
<h2>Processes the manager hears</h2><table id="processes"></table>
<h2>Troubles</h2><table id="troubles"></table>
<script>
function table(id, head, rows) {
  const t = document.getElementById(id);
  t.innerHTML = "<tr>" + head.map(h => "<th>" + h + "</th>").join("") + "</tr>" +
    rows.map(r => "<tr>" + r.map(c => "<td>" + c + "</td>").join("") + "</tr>").join("");
}
const pct = x => (100 * x).toFixed(1) + " %";
async function refresh() {
  try {
    const s = await (await fetch("status.json", {cache: "no-store"})).json();
    document.getElementById("title").textContent = s.manager + " (" + s.state + ")";
    document.getElementById("summary").textContent = "ring epoch " + s.epoch + ", R=" +
      s.replication + ", " + s.members.length + " nodes, " + s.chains.length +
      " distinct chains; arcs without a holder: " + s.arcs_without_holder;
    table("members", ["node", "address", "host", "zone", "weight", "state", "head of",
                      "tail of", "holds", "keys", "not yet stable"],
      s.members.map(m => [m.name, m.addr, m.host, m.zone, m.weight,
        s.leaving.includes(m.name) ? '<span class="bad">draining</span>' :
        s.learners.includes(m.name) ? '<span class="bad">copying (learner)</span>' :
        m.down ? '<span class="bad">down</span>' : '<span class="ok">up</span>',
        pct(m.head_share), pct(m.tail_share), pct(m.key_share),
        m.keys === null ? "" : m.keys.toLocaleString(),
        m.unstable === null ? "" : m.unstable]));
    table("visibility", ["from DC", "visible here after (median)"],
      Object.entries(s.visibility_ms).map(([dc, ms]) => ["dc" + dc, ms + " ms"]));
    table("chains", ["chain", "share"], s.chains.map(c => [c.chain.join(" \\u2192 "),
                                                        pct(c.share)]));
    table("processes", ["process", "role", "address", "heard", "clock offset"],
      s.processes.map(p => [p.name, p.role, p.addr,
        (p.healthy ? '<span class="ok">' : '<span class="bad">') + p.heard_s_ago +
        " s ago</span>", p.clock_offset_ms === null ? "" : p.clock_offset_ms + " ms"]));
    table("troubles", ["counter", "count"], Object.entries(s.troubles));
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the manager: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""
