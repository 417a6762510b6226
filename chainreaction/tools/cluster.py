"""A local cluster of real processes on 127.0.0.1: plan, start, watch, kill, restart, stop.

Used by ``chainreaction cluster up``, the demo, the benchmark and the end-to-end tests.
Every process is ``python -m chainreaction ROLE ...`` with its log in ``DIR/logs``;
``DIR/cluster.json`` lists each one (role, name, dc, address, pid) with its exact command
line, working directory, data and log, so that an operator, a test or ``chainreaction
cluster restart NAME`` can start it again as it was started (``manifest.py``).

With ``dcs > 1`` each DC gets a manager, nodes, frontends and a remote proxy, named
``dc<N>-<name>``; DC N's ports start at ``base_port + N * stride`` (``ports_per_dc``): the
manager, the nodes, then each frontend's internal and WebSocket port (so the first
frontend's URL does not depend on how many there are), each node's WebSocket port
(``node_clients``), then the proxy. The proxies delay what they send each other by
``wan_delay_ms`` (+ jitter): a WAN on one machine.

Every DC has several serving processes: ``frontends`` standalone frontends and, with
``node_clients`` (``cluster up``'s default, without standalone frontends), every node.
None of them is the DC, since clients given all their URLs fail over from one to the next
(chainreaction/client.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import attrs

from ..storage import DEFAULT_DURABILITY, DURABILITY_LEVELS
from . import manifest

HOST = "127.0.0.1"


@attrs.define
class ProcessSpec:
    role: str
    name: str
    addr: str  # internal TCP address
    args: list
    url: str | None = None  # client WebSocket URL (frontends)
    dc: int = 0
    data: str | None = None  # what it keeps on disk (manifest.py); frontends keep nothing
    metrics: str | None = None  # HOST:PORT of its Prometheus metrics, if it serves them
    popen: subprocess.Popen | None = None

    @property
    def argv(self) -> list:
        return [sys.executable, "-m", "chainreaction", *self.args]

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@attrs.define
class ClusterConfig:
    nodes: int = 3
    replication: int = 3
    eager: int = 1
    frontends: int = 1  # per DC; ``cluster up``, the demo and ``jepsen`` start 2
    # nodes serve clients too (``node --ws``: a frontend in each node's process); their
    # WebSocket ports follow the frontends' in each DC's block, before the proxy's
    node_clients: bool = False
    data_dir: str = "./cr-data"
    base_port: int = 7100
    read_from: str = "chain"
    failure_timeout_s: float = 1.5
    fsync: bool = False  # the old name of durability="every"
    durability: str = DEFAULT_DURABILITY  # of nodes and proxies (storage.py)
    dcs: int = 1
    wan_delay_ms: float = 0.0
    wan_jitter_ms: float = 0.0
    batch_interval_ms: float = 5.0
    tombstone_grace_s: float = 600.0
    unsafe_skip_dependency_checks: bool = False  # frontends break causality (checker tests)
    unsafe_independent_txn_reads: bool = False  # frontends break transactions (the same)
    managers: int = 1  # per DC; more than one: an election through etcd (manager.py)
    etcd_url: str | None = None  # None with managers > 1: the cluster starts its own etcd
    # processes obey FaultControl / WanControl (clock skew, cut links): tests, jepsen and
    # `wan cut` on a local test cluster only
    allow_fault_injection: bool = False
    secret_file: str | None = None  # the cluster secret every process proves (runtime/secret.py)
    # TLS (runtime/tls.py): a certificate (PEM, for 127.0.0.1), its key and the CA that
    # signed it: frontends serve wss://, proxies speak mutual TLS between DCs
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # every process serves Prometheus metrics on a port of its own, after the others
    # (`cluster up` turns it on; its URL is in cluster.json)
    metrics: bool = False

    @property
    def durability_level(self) -> str:
        return "every" if self.fsync else self.durability

    @property
    def ports_per_dc(self) -> int:
        return (1 + self.managers + self.nodes + 2 * self.frontends
                + (self.nodes if self.node_clients else 0))

    @property
    def own_etcd(self) -> bool:
        return self.managers > 1 and not self.etcd_url

    @property
    def port_count(self) -> int:
        """Ports from ``base_port`` on: every DC's, then etcd's two if we start it."""
        return (self.dcs * self.ports_per_dc + (2 if self.own_etcd else 0)
                + (self.dcs * self.metrics_ports_per_dc if self.metrics else 0))

    @property
    def metrics_ports_per_dc(self) -> int:
        return self.managers + self.nodes + self.frontends + 1  # (+ the proxy)

    def validate(self) -> None:
        if self.nodes < 1:
            raise ValueError("--nodes must be at least 1")
        if not 1 <= self.replication <= self.nodes:
            raise ValueError(f"--replication must be between 1 and --nodes ({self.nodes})")
        if not 1 <= self.eager <= self.replication:
            raise ValueError(f"--eager must be between 1 and --replication ({self.replication})")
        if self.frontends < (0 if self.node_clients else 1):
            raise ValueError("nothing would serve clients: --frontends must be at least 1 "
                             "with --no-node-clients")
        if not 1 <= self.managers <= 7:
            raise ValueError("--managers must be between 1 and 7")
        if self.etcd_url and self.managers < 2:
            raise ValueError("--etcd is for --managers 2 or more (one manager keeps its ring "
                             "in its data dir)")
        if not 1 <= self.dcs <= 16:
            raise ValueError("--dcs must be between 1 and 16")
        if self.wan_delay_ms < 0 or self.wan_jitter_ms < 0:
            raise ValueError("--wan-delay and --wan-jitter must be >= 0")
        if self.batch_interval_ms <= 0:
            raise ValueError("--batch-interval must be > 0")
        if self.durability not in DURABILITY_LEVELS:
            raise ValueError(f"--durability must be one of {', '.join(DURABILITY_LEVELS)}")
        if self.tombstone_grace_s <= 0:
            raise ValueError("--tombstone-grace must be > 0")
        if self.failure_timeout_s < 0.5:
            raise ValueError("--failure-timeout must be >= 0.5 s (heartbeats go every 0.2 s)")
        last = self.base_port + self.port_count
        if not 1024 <= self.base_port or last > 65535:
            raise ValueError("--base-port must leave room for all ports in 1024..65535")


class LocalCluster:
    """Processes of one datacenter. ``start()`` returns once every frontend serves."""

    def __init__(self, config: ClusterConfig) -> None:
        config.validate()
        self.config = config
        self.data_dir = os.path.abspath(config.data_dir)
        self.log_dir = os.path.join(self.data_dir, "logs")
        self.cwd = os.getcwd()
        self.env = {k: os.environ[k] for k in manifest.ENV_KEPT if k in os.environ}
        self.processes: dict[str, ProcessSpec] = {}
        self._plan()
        for spec in self.processes.values():
            if spec.role != "etcd":
                if config.allow_fault_injection:
                    spec.args.append("--allow-fault-injection")
                if config.secret_file:
                    spec.args += ["--secret-file", config.secret_file]
                if config.tls_cert and spec.url:
                    spec.args += ["--tls-cert", config.tls_cert, "--tls-key", config.tls_key]
                    spec.url = spec.url.replace("ws://", "wss://")
                if config.tls_cert and spec.role == "proxy":
                    spec.args += ["--wan-tls-cert", config.tls_cert, "--wan-tls-key",
                                  config.tls_key, "--wan-tls-ca", config.tls_ca]
        if config.metrics:
            port = config.base_port + config.dcs * config.ports_per_dc + (
                2 if config.own_etcd else 0)
            for spec in self.processes.values():
                if spec.role != "etcd":
                    spec.metrics = f"{HOST}:{port}"
                    spec.args += ["--metrics-listen", spec.metrics]
                    port += 1

    def name(self, dc: int, local: str) -> str:
        return f"dc{dc}-{local}" if self.config.dcs > 1 else local

    def _plan(self) -> None:
        c = self.config
        geo = c.dcs > 1
        proxies = {dc: (self.name(dc, "proxy"),
                        f"{HOST}:{c.base_port + dc * c.ports_per_dc + c.ports_per_dc - 1}")
                   for dc in range(c.dcs)} if geo else {}
        etcd_url = c.etcd_url
        if c.own_etcd:
            client = f"{HOST}:{c.base_port + c.dcs * c.ports_per_dc}"
            peer = f"{HOST}:{c.base_port + c.dcs * c.ports_per_dc + 1}"
            etcd_dir = os.path.join(self.data_dir, "etcd")
            self.processes["etcd"] = ProcessSpec("etcd", "etcd", client, [
                "etcd", "--listen", client, "--peer-listen", peer, "--data-dir", etcd_dir],
                dc=-1, data=etcd_dir)  # (every DC's: no DC fault takes it down)
            etcd_url = f"http://{client}"
        for dc in range(c.dcs):
            port = c.base_port + dc * c.ports_per_dc
            manager_addr = self._plan_managers(dc, port, etcd_url)
            port += c.managers - 1
            geo_args = ["--dc", str(dc), "--proxy", proxies[dc][1],
                        "--proxy-name", proxies[dc][0]] if geo else []
            for i in range(1, c.nodes + 1):
                name, addr = self.name(dc, f"n{i}"), f"{HOST}:{port + i}"
                args = ["node", "--name", name, "--listen", addr, "--manager", manager_addr,
                        "--data-dir", self.data_dir, "--eager", str(c.eager),
                        "--tombstone-grace", str(c.tombstone_grace_s),
                        "--durability", c.durability_level, *geo_args]
                ws = f"{HOST}:{port + c.nodes + 2 * c.frontends + i}"
                if c.node_clients:
                    args += ["--ws", ws]
                self.processes[name] = ProcessSpec("node", name, addr, args, dc=dc,
                                                   data=os.path.join(self.data_dir, name),
                                                   url=f"ws://{ws}" if c.node_clients else None)
            for i in range(1, c.frontends + 1):
                name = self.name(dc, f"f{i}")
                addr = f"{HOST}:{port + c.nodes + 2 * i - 1}"
                ws = f"{HOST}:{port + c.nodes + 2 * i}"
                self.processes[name] = ProcessSpec("frontend", name, addr, [
                    "frontend", "--name", name, "--listen", addr, "--ws", ws,
                    "--manager", manager_addr, "--read-from", c.read_from, *geo_args,
                    *(["--unsafe-skip-dependency-checks"]
                      if c.unsafe_skip_dependency_checks else []),
                    *(["--unsafe-independent-txn-reads"]
                      if c.unsafe_independent_txn_reads else [])],
                    url=f"ws://{ws}", dc=dc)
            if geo:
                name, addr = proxies[dc]
                args = ["proxy", "--name", name, "--dc", str(dc), "--listen", addr,
                        "--manager", manager_addr, "--data-dir", self.data_dir,
                        "--wan-delay", str(c.wan_delay_ms), "--wan-jitter", str(c.wan_jitter_ms),
                        "--batch-interval", str(c.batch_interval_ms),
                        "--durability", c.durability_level]
                for peer_dc, (peer, peer_addr) in proxies.items():
                    if peer_dc != dc:
                        args += ["--peer", f"{peer_dc}={peer}@{peer_addr}"]
                self.processes[name] = ProcessSpec("proxy", name, addr, args, dc=dc,
                                                   data=os.path.join(self.data_dir, name))

    def _plan_managers(self, dc: int, port: int, etcd_url: str | None) -> str:
        """The DC's manager, or its managers in an election through etcd: what members
        give as ``--manager``."""
        c = self.config
        common = ["--replication", str(c.replication), "--failure-timeout",
                  str(c.failure_timeout_s)]
        if c.managers == 1:
            name, addr = self.name(dc, "manager"), f"{HOST}:{port}"
            self.processes[name] = ProcessSpec("manager", name, addr, [
                "manager", "--listen", addr, *common, "--name", name,
                "--data-dir", self.data_dir], dc=dc,
                data=os.path.join(self.data_dir, f"{name}.state"))
            return addr
        addrs = []
        for i in range(1, c.managers + 1):
            name, addr = self.name(dc, f"manager{i}"), f"{HOST}:{port + i - 1}"
            self.processes[name] = ProcessSpec("manager", name, addr, [
                "manager", "--listen", addr, *common, "--etcd", etcd_url,
                "--etcd-prefix", f"/chainreaction{self.data_dir}/dc{dc}"], dc=dc)
            addrs.append(addr)
        return ",".join(addrs)

    @property
    def urls(self) -> list[str]:
        """Every serving process's (frontends', and nodes' with ``node_clients``)."""
        return [p.url for p in self.processes.values() if p.url]

    def urls_of(self, dc: int) -> list[str]:
        return [p.url for p in self.processes.values() if p.url and p.dc == dc]

    def of_dc(self, dc: int, role: str) -> list[str]:
        return [p.name for p in self.processes.values() if p.role == role and p.dc == dc]

    @property
    def nodes(self) -> list[str]:
        return [p.name for p in self.processes.values() if p.role == "node"]

    def spawn(self, name: str) -> None:
        spec = self.processes[name]
        assert not spec.alive(), f"{name} is already running"
        spec.popen = manifest.launch(spec.argv, self.cwd, self.env, self.log_path(name))
        self.write_manifest()

    def log_path(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    def start(self) -> None:
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(f"--data-dir {self.data_dir} is a file, not a directory: give "
                             "a directory (it is created if missing)") from None
        for name in self.processes:
            self.spawn(name)

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: bool = True) -> None:
        """Signal ``name`` if it runs; KILL and TERM wait until it is gone, unless not
        ``wait`` (to kill several at once: signal each, then kill each again to reap)."""
        spec = self.processes[name]
        if spec.alive():
            spec.popen.send_signal(sig)
            if wait and sig in (signal.SIGKILL, signal.SIGTERM):
                spec.popen.wait(timeout=10)

    def restart(self, name: str) -> None:
        if self.processes[name].alive():
            self.kill(name)
        self.spawn(name)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM everything, wait, then SIGKILL what is left; processes restarted by
        ``cluster restart`` or by hand (not our children: found by command line) too."""
        self._stop_restarted_by_others(timeout_s)
        for spec in self.processes.values():
            if spec.alive():
                spec.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for spec in self.processes.values():
            if spec.popen is None:
                continue
            try:
                spec.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                spec.popen.kill()
                spec.popen.wait()

    def write_manifest(self) -> None:
        """Our children's pids; for a process we have no live child of, the pid the file
        already holds (``cluster restart`` may have started it)."""
        recorded = {p["name"]: p["pid"] for p in self._recorded_processes()}
        removed = self.removed_nodes()  # (remove-node's mark stays)
        manifest.write(self.data_dir, {
            "config": attrs.asdict(self.config),
            "urls": self.urls,
            "processes": [
                {"role": p.role, "name": p.name, "dc": p.dc, "address": p.addr, "url": p.url,
                 "pid": p.pid if p.alive() else recorded.get(p.name, p.pid),
                 "argv": p.argv, "cwd": self.cwd, "env": self.env, "data": p.data,
                 "log": self.log_path(p.name),
                 "metrics": f"http://{p.metrics}/metrics" if p.metrics else None,
                 **({"removed": True} if p.name in removed else {})}
                for p in self.processes.values()
            ],
        })

    def _recorded_processes(self) -> list:
        try:
            with open(os.path.join(self.data_dir, manifest.FILE)) as f:
                return json.load(f)["processes"]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def adopt_added(self) -> dict:
        """Processes DIR/cluster.json lists that we did not start (``cluster add-node``):
        ours from now on (stopped with the rest at the end). Their names and pids."""
        added = {}
        for p in self._recorded_processes():
            if p.get("name") not in self.processes and p.get("argv", [])[:3] == [
                    sys.executable, "-m", "chainreaction"]:
                metrics = p.get("metrics") or ""
                self.processes[p["name"]] = ProcessSpec(
                    p["role"], p["name"], p["address"], list(p["argv"][3:]), p.get("url"),
                    p.get("dc", 0), p.get("data"),
                    metrics[len("http://"):-len("/metrics")] if metrics else None)
                added[p["name"]] = p.get("pid")
        return added

    def add_node(self, dc: int) -> str:
        """Start one more node in DC ``dc`` (as ``cluster add-node``); its name."""
        from .membership import plan_node

        self.write_manifest()
        entry = plan_node(manifest.load(self.data_dir), dc)
        metrics = entry["metrics"] or ""
        self.processes[entry["name"]] = ProcessSpec(
            "node", entry["name"], entry["address"], list(entry["argv"][3:]), None, dc,
            entry["data"], metrics[len("http://"):-len("/metrics")] if metrics else None)
        self.spawn(entry["name"])
        return entry["name"]

    def forget(self, name: str) -> None:
        """A node removed from the ring (it stopped): no longer one of ours, nor its data
        directory (its store id is the manager's "removed": a node started there again,
        e.g. under the same name by the next add_node, would be refused)."""
        spec = self.processes.pop(name)
        if spec.data:
            shutil.rmtree(spec.data, ignore_errors=True)
        self.write_manifest()

    def wipe(self, name: str) -> None:
        """Empty a stopped node's data directory (a fresh disk)."""
        assert not self.processes[name].alive(), name
        shutil.rmtree(self.processes[name].data, ignore_errors=True)

    def removed_nodes(self) -> set:
        """Nodes ``cluster remove-node`` took out (marked so in DIR/cluster.json)."""
        return {p.get("name") for p in self._recorded_processes() if p.get("removed")}

    def restarted_by_others(self) -> dict:
        """Name -> pid of a process that runs the command line of one of ours but is not
        our child: restarted by ``cluster restart`` or by hand."""
        table = manifest.scan() or {}
        found = {}
        for name, spec in self.processes.items():
            mine = spec.pid if spec.alive() else None
            others = [pid for pid in table.get(tuple(spec.argv), []) if pid != mine]
            if others:
                found[name] = min(others)
        return found

    def _stop_restarted_by_others(self, timeout_s: float) -> None:
        others = self.restarted_by_others()
        if others:
            mine = tuple(s.pid for s in self.processes.values() if s.alive())
            manifest.stop_all([{"argv": self.processes[n].argv, "pid": pid}
                               for n, pid in others.items()], timeout_s, spare=mine)

    def dead_processes(self) -> list[str]:
        return [p.name for p in self.processes.values() if p.popen and not p.alive()]

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""
