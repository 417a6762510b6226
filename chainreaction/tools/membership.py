"""Membership changes on a running cluster (issue 18): ``chainreaction cluster add-node``
/ ``remove-node`` / ``replace-node`` on a local ``cluster up``, and ``chainreaction admin``
against a DC's manager address (deployments across machines).

* **add-node**: the new node is started as ``cluster up`` starts its others (its command
  line made from a node of the same DC: another name, free ports), recorded in
  DIR/cluster.json (``cluster up`` adopts it: it is stopped with the rest, ``cluster
  restart`` and ``cluster kill`` know it), and followed until it serves the ranges it
  copied, with progress.
* **remove NAME** (``admin remove``, ``cluster remove-node``): the manager drains the node
  (manager.py, "Membership changes"): its ranges are copied to the nodes taking its place,
  then it leaves the ring, deletes what it holds and stops. Followed with progress (arcs
  still moving); ``admin cancel NAME`` puts a draining node back.
* **replace-node NAME**: a removal, then the same node started again on an empty data
  directory (a fresh disk, same name and ports): it joins as a new node and copies its
  ranges.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import time

import trio

from .. import messages as m
from ..runtime.probe import Refused, ask, process_stats
from . import manifest

REMOVE_TIMEOUT_S = 300.0

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
    used |= {_port(p["url"].split("://", 1)[1]) for p in data["processes"] if p.get("url")}
    used |= {int(re.search(r":(\d+)/", p["metrics"]).group(1))
             for p in data["processes"] if p.get("metrics")}
    port = max(used) + 1
    serves_clients = "--ws" in template["argv"]  # (``cluster up --node-clients``)
    wanted = 1 + serves_clients + ("--metrics-listen" in template["argv"])
    while not all(_free(port + i) for i in range(wanted)):
        port += 1
    addr = f"127.0.0.1:{port}"
    argv = _arg(_arg(template["argv"], "--name", name), "--listen", addr)
    entry = {**template, "name": name, "address": addr, "argv": argv, "pid": None,
             "log": re.sub(re.escape(template["name"]) + r"\.log$", f"{name}.log",
                           template["log"]),
             "data": re.sub(re.escape(template["name"]) + "$", name, template["data"] or ""),
             "metrics": None}
    port += 1
    if serves_clients:
        ws = f"127.0.0.1:{port}"
        entry["argv"] = _arg(entry["argv"], "--ws", ws)
        entry["url"] = template["url"].split("://", 1)[0] + "://" + ws
        port += 1
    if "--metrics-listen" in template["argv"]:
        metrics = f"127.0.0.1:{port}"
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
    return await _follow(entry, popen, say, timeout_s)


async def _follow(entry: dict, popen, say, timeout_s: float) -> dict:
    """Wait until the node started as ``popen`` serves (progress on the way); its stats."""
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
                    f"{stats.get('syncing_ranges') or 0}, records received "
                    f"{stats.get('sync_items_received', 0):,}")
            await trio.sleep(0.5)
    if waited.cancelled_caught:
        raise ValueError(f"{entry['name']} does not serve after {timeout_s:g} s; see "
                         f"{entry['log']}")
    say(f"{entry['name']}: serving in ring epoch {stats.get('epoch')} after "
        f"{time.monotonic() - started:.1f} s: {stats.get('sync_items_received', 0):,} "
        f"records copied in {stats.get('sync_done', 0)} range copies")
    return stats


# -- talking to a DC's manager ---------------------------------------------------------------


async def ask_manager(managers: list, action: str, name: str = "") -> dict:
    """``MembershipChange`` to the active manager among ``managers`` (standbys refuse)."""
    problems = []
    for addr in managers:
        try:
            return await ask(addr, m.MembershipChange(1, action, name), timeout_s=3.0)
        except Refused as exc:
            if str(exc).startswith(m.NOT_READY):
                problems.append(f"{addr} is a standby")
                continue
            raise ValueError(f"the manager refused: {exc}") from None
        except (trio.TooSlowError, OSError):
            problems.append(f"{addr} does not answer")
    raise ValueError("no active manager: " + "; ".join(problems))


def describe(status: dict) -> str:
    line = (f"ring epoch {status['epoch']}: serving {', '.join(status['serving']) or 'none'}"
            f"; arcs still moving {status['arcs_moving']} of {status['arcs']}")
    for what in ("leaving", "down", "removed"):
        if status.get(what):
            line += f"; {what} {', '.join(status[what])}"
    return line


async def remove(managers: list, name: str, say=print,
                 timeout_s: float = REMOVE_TIMEOUT_S) -> dict:
    """Drain ``name`` and wait until it has left the ring; the manager's last status."""
    status = await ask_manager(managers, "remove", name)
    say(f"{name}: draining; {describe(status)}")
    started, last = time.monotonic(), None
    while name not in status["removed"]:
        if name not in status["leaving"]:
            raise ValueError(f"the removal of {name} was cancelled")
        if time.monotonic() - started > timeout_s:
            raise ValueError(f"{name} still drains after {timeout_s:g} s ({describe(status)})"
                             f"; `chainreaction admin cancel {name}` puts it back")
        await trio.sleep(0.5)
        status = await ask_manager(managers, "status")
        if (status["arcs_moving"], status["epoch"]) != last:
            last = (status["arcs_moving"], status["epoch"])
            say(f"{name}: {time.monotonic() - started:5.1f} s: {describe(status)}")
    say(f"{name}: left the ring (epoch {status['epoch']}) after "
        f"{time.monotonic() - started:.1f} s; it deletes what it holds and stops")
    return status


# -- on a local ``cluster up`` -------------------------------------------------------------------


def _managers_of(data: dict, dc: int) -> list:
    found = [p["address"] for p in data["processes"]
             if p["role"] == "manager" and p.get("dc", 0) == dc]
    if not found:
        raise ValueError(f"the cluster has no manager in dc{dc}")
    return found


async def _copied(data: dict, dc: int, skip: str) -> int:
    """Records the nodes of DC ``dc`` (but ``skip``) received in range copies so far."""
    total = 0
    for p in data["processes"]:
        if (p["role"] == "node" and p.get("dc", 0) == dc and p["name"] != skip
                and not p.get("removed")):
            try:
                total += (await process_stats(p["address"], timeout_s=2)).get(
                    "sync_items_received", 0)
            except (trio.TooSlowError, OSError):
                pass
    return total


async def remove_node(data_dir: str, name: str, say=print,
                      timeout_s: float = REMOVE_TIMEOUT_S) -> dict:
    """``cluster remove-node NAME``: drain it, wait for its process to stop, mark it
    removed in DIR/cluster.json; what it did (records copied, keys left in its store)."""
    data = manifest.load(data_dir)
    entry = manifest.entry(data, name)
    if entry["role"] != "node":
        raise ValueError(f"{name} is a {entry['role']}, not a node")
    dc = entry.get("dc", 0)
    copied = await _copied(data, dc, name)
    await remove(_managers_of(data, dc), name, say, timeout_s)
    deadline = time.monotonic() + 60
    while manifest.pids_of(entry):
        if time.monotonic() > deadline:
            manifest.stop_all([entry])
            say(f"{name}: still running 60 s after it left the ring: stopped (SIGTERM)")
            break
        await trio.sleep(0.2)
    copied = await _copied(data, dc, name) - copied
    data = manifest.load(data_dir)
    manifest.entry(data, name)["removed"] = True
    manifest.write(data_dir, data)
    left = _keys_in(entry.get("data"))
    say(f"{name}: stopped; {copied:,} records copied to the other nodes; its store holds "
        f"{left} keys")
    return {"copied": copied, "keys_left": left}


def _keys_in(path: str | None) -> int | str:
    if not path or not os.path.isdir(path):
        return 0
    from ..rocks_store import RocksStore, StoreUnavailable

    try:
        store = RocksStore(path)
    except StoreUnavailable as exc:
        return f"? ({exc})"
    try:
        return len(store)
    finally:
        store.close()


async def replace_node(data_dir: str, name: str, say=print,
                       timeout_s: float = REMOVE_TIMEOUT_S) -> dict:
    """``cluster replace-node NAME``: remove it, then start it again on an empty data
    directory (same name, ports and flags) and wait until it serves."""
    await remove_node(data_dir, name, say, timeout_s)
    data = manifest.load(data_dir)
    entry = manifest.entry(data, name)
    if entry.get("data"):
        shutil.rmtree(entry["data"], ignore_errors=True)
        say(f"{name}: data directory {entry['data']} emptied")
    entry.pop("removed", None)
    popen = manifest.launch(entry["argv"], entry["cwd"], entry["env"], entry["log"])
    entry["pid"] = popen.pid
    manifest.write(data_dir, data)
    say(f"{name}: started again on an empty disk (pid {popen.pid})")
    return await _follow(entry, popen, say, SERVE_TIMEOUT_S)


# -- command line ---------------------------------------------------------------------------------


def add_cluster_parsers(csub) -> None:
    """``cluster add-node``, ``remove-node``, ``replace-node``."""
    def data_dir(p):
        p.add_argument("--cluster", default="./cr-data", metavar="DIR",
                       help="data dir of `cluster up` (default ./cr-data)")

    add = csub.add_parser("add-node", help="start one more node in a DC of a running "
                          "`cluster up`; it copies its ranges and serves (progress shown)")
    data_dir(add)
    add.add_argument("--dc", type=int, default=0, help="which datacenter (default 0)")
    rm = csub.add_parser("remove-node", help="drain a node of a running `cluster up`: its "
                         "ranges move to the others, then it leaves the ring, deletes what "
                         "it holds and stops (progress shown)")
    rm.add_argument("name", metavar="NAME")
    data_dir(rm)
    rp = csub.add_parser("replace-node", help="remove a node (drain), then start it again "
                         "on an empty data directory: a fresh disk under the same name")
    rp.add_argument("name", metavar="NAME")
    data_dir(rp)


def add_admin_parser(sub) -> None:
    admin = sub.add_parser(
        "admin", help="membership changes against a DC's manager (deployments across "
        "machines): status, remove NAME (drain), cancel NAME",
        description="Talks to the manager(s) of one DC. `remove` drains the node: its "
        "ranges are copied to the nodes taking its place, then it leaves the ring, deletes "
        "what it holds and stops (followed with progress until then). `cancel` puts a "
        "draining node back. To add a node, start `chainreaction node` with --manager.")
    admin.add_argument("action", choices=("status", "remove", "cancel"))
    admin.add_argument("name", nargs="?", default="", metavar="NAME",
                       help="the node (remove, cancel)")
    admin.add_argument("--manager", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                       help="the DC's manager address(es) (every one, with standbys)")
    admin.add_argument("--secret-file", metavar="FILE", help="the cluster secret, if the "
                       "cluster has one (default: $CHAINREACTION_SECRET_FILE)")
    admin.add_argument("--no-wait", action="store_true",
                       help="remove: return once the drain has started")


async def run(args: argparse.Namespace) -> int:
    """The ``cluster add/remove/replace-node`` and ``admin`` commands."""
    if args.command == "admin":
        from ..runtime.driver import parse_managers

        managers = parse_managers(args.manager)
        if args.action != "status" and not args.name:
            raise ValueError(f"admin {args.action} needs the NAME of a node")
        if args.action == "remove" and not args.no_wait:
            await remove(managers, args.name)
        else:
            print(describe(await ask_manager(managers, args.action, args.name)))
        return 0
    action = args.cluster_command
    if action == "add-node":
        await add_node(args.cluster, args.dc)
    elif action == "remove-node":
        await remove_node(args.cluster, args.name)
    else:
        await replace_node(args.cluster, args.name)
    return 0
