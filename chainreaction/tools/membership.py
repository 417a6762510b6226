"""``chainreaction cluster add-node``: grow a running local cluster by one node (issue 18,
membership, first part). The new node is started as ``cluster up`` starts its others (its
command line made from a node of the same DC: another name, free ports), recorded in
DIR/cluster.json (``cluster up`` adopts it: it is stopped with the rest, ``cluster
restart`` and ``cluster kill`` know it), and followed until it serves the ranges it
copied, with progress."""

from __future__ import annotations

import re
import socket
import time

import trio

from ..runtime.probe import process_stats
from . import manifest

SERVE_TIMEOUT_S = 120.0


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _arg(argv: list, flag: str, value: str) -> list:
    """``argv`` with ``flag``'s value replaced (``flag`` must be there)."""
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


def plan_node(data: dict, dc: int) -> dict:
    """The manifest entry of the next node of DC ``dc``: a node's of that DC, renamed, on
    the first free ports after every port the cluster uses."""
    nodes = [p for p in data["processes"] if p["role"] == "node" and p.get("dc", 0) == dc]
    if not nodes:
        raise ValueError(f"the cluster has no node in dc{dc} to take after (--dc?)")
    template = nodes[0]
    prefix = re.sub(r"n\d+$", "", template["name"])
    number = 1 + max(int(re.search(r"n(\d+)$", p["name"]).group(1)) for p in nodes)
    name = f"{prefix}n{number}"
    used = {_port(p["address"]) for p in data["processes"]}
    used |= {int(re.search(r":(\d+)/", p["metrics"]).group(1))
             for p in data["processes"] if p.get("metrics")}
    port = max(used) + 1
    wanted = 2 if "--metrics-listen" in template["argv"] else 1
    while not all(_free(port + i) for i in range(wanted)):
        port += 1
    addr = f"127.0.0.1:{port}"
    argv = _arg(_arg(template["argv"], "--name", name), "--listen", addr)
    entry = {**template, "name": name, "address": addr, "argv": argv, "pid": None,
             "log": re.sub(re.escape(template["name"]) + r"\.log$", f"{name}.log",
                           template["log"]),
             "data": re.sub(re.escape(template["name"]) + "$", name, template["data"] or ""),
             "metrics": None}
    if wanted == 2:
        metrics = f"127.0.0.1:{port + 1}"
        entry["argv"] = _arg(entry["argv"], "--metrics-listen", metrics)
        entry["metrics"] = f"http://{metrics}/metrics"
    return entry


async def add_node(data_dir: str, dc: int = 0, say=print,
                   timeout_s: float = SERVE_TIMEOUT_S) -> dict:
    """Start the next node of DC ``dc`` and wait until it serves; its final stats."""
    data = manifest.load(data_dir)
    entry = plan_node(data, dc)
    popen = manifest.launch(entry["argv"], entry["cwd"], entry["env"], entry["log"])
    entry["pid"] = popen.pid
    data["processes"].append(entry)
    manifest.write(data_dir, data)
    say(f"{entry['name']}: started (pid {popen.pid}) on {entry['address']}; log "
        f"{entry['log']}")
    started = time.monotonic()
    stats: dict = {}
    with trio.move_on_after(timeout_s) as waited:
        while True:
            if popen.poll() is not None:
                raise ValueError(f"{entry['name']} exited (code {popen.returncode}); see "
                                 f"{entry['log']}")
            try:
                stats = await process_stats(entry["address"], timeout_s=2)
            except (trio.TooSlowError, OSError):
                stats = {}
            if stats.get("serving"):
                break
            if stats:
                say(f"{entry['name']}: {time.monotonic() - started:4.1f} s: ring epoch "
                    f"{stats.get('epoch')}, ranges still copying "
                    f"{len(stats.get('syncing_ranges') or [])}, records received "
                    f"{stats.get('sync_items_received', 0):,}")
            await trio.sleep(0.5)
    if waited.cancelled_caught:
        raise ValueError(f"{entry['name']} does not serve after {timeout_s:g} s; see "
                         f"{entry['log']}")
    say(f"{entry['name']}: serving in ring epoch {stats.get('epoch')} after "
        f"{time.monotonic() - started:.1f} s: {stats.get('sync_items_received', 0):,} "
        f"records copied in {stats.get('sync_done', 0)} range copies")
    return stats
