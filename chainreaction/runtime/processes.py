"""The node and manager processes: open the store, build the core, run it with the driver.
(The frontend's and remote proxy's are in ``frontend/server.py`` and
``remote_proxy/server.py``: they add client WebSockets and the WAN.)

A manager runs alone (its state in a file), or as one of several in an election through
etcd (``election.py``): a standby until it wins, then the DC's manager until it loses
its seat, then a standby again with a fresh core."""

from __future__ import annotations

import logging
import os
import socket
import time

from typing import TYPE_CHECKING

import attrs
import trio

from ..manager import ManagerConfig, ManagerCore
from ..state_file import FileState
from ..node import NodeConfig, NodeCore
from ..rocks_store import RocksStore
from ..storage import DEFAULT_DURABILITY
from .driver import (MANAGER, Driver, SyncFailed, group_commit, install_stop_handler,
                     learn_managers, manager_name, serve, wall_clock)
from .election import CommittedState, Leadership, LostLeadership
from .etcd import EtcdClient, EtcdUnavailable
from .transport import Transport

if TYPE_CHECKING:  # (the frontend package is imported only by a node that serves clients)
    from frontend.config import FrontendConfig

log = logging.getLogger(__name__)


def build_node(name: str, listen: str, manager_addr: str, data_dir: str, config: NodeConfig,
               durability: str = DEFAULT_DURABILITY, proxy_addr: str | None = None) -> Driver:
    """A node's store, core, driver and transport, not yet serving."""
    store = RocksStore(os.path.join(data_dir, name), durability=durability)
    driver = Driver(NodeCore(name, store, config, wall_clock(), monotonic=time.monotonic), None,
                    durable=group_commit(store, durability))
    driver.data_path = os.path.join(data_dir, name)
    transport = Transport(name, "node", listen, driver.on_message)
    learn_managers(transport, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver.attach(transport)
    return driver


async def run_node(name: str, listen: str, manager_addr: str, data_dir: str,
                   config: NodeConfig, durability: str = DEFAULT_DURABILITY,
                   proxy_addr: str | None = None, clients: "ServeClients | None" = None,
                   task_status=trio.TASK_STATUS_IGNORED):
    driver = build_node(name, listen, manager_addr, data_dir, config, durability, proxy_addr)
    store = driver.core.store
    try:
        async with trio.open_nursery() as nursery:
            await serve(nursery, driver)
            log.info("node %s listening on %s (%d keys on disk, durability %s)", name, listen,
                     len(store), durability)
            if clients is not None:
                await _serve_clients_here(nursery, driver, manager_addr, proxy_addr, clients)
            task_status.started()
    finally:
        store.close()


@attrs.frozen
class ServeClients:
    """A node's own frontend (``node --ws``): clients' WebSockets on ``ws_listen``."""

    ws_listen: str
    config: "FrontendConfig"  # (``local_node``: the node)
    ssl_context: object = None


def co_hosted_frontend_name(node: str) -> str:
    return node + "-fe"


async def _serve_clients_here(nursery: trio.Nursery, node: Driver, manager_addr: str,
                              proxy_addr: str | None, clients: ServeClients) -> None:
    """A frontend core in the node's process: its own name and internal port (the manager
    and the other nodes reach it as any frontend), reads it may serve here go to the node
    as objects (``Transport.co_host``), without a hop."""
    from frontend.server import build_frontend, serve_clients

    host = node.transport.listen_addr.rpartition(":")[0]
    port_file = node.data_path + ".fe-port" if node.data_path else None
    frontend = build_frontend(co_hosted_frontend_name(node.core.name),
                              f"{host}:{_remembered_port(host, port_file)}",
                              manager_addr, clients.config, proxy_addr=proxy_addr)
    frontend.transport.co_host(node.transport)
    frontend.transport.learn(node.core.name, node.transport.addr)
    await nursery.start(frontend.transport.serve)
    if port_file is not None:
        _remember_port(port_file, frontend.transport.addr.rpartition(":")[2])
    advertised = node.transport.addr.rpartition(":")[0]
    frontend.transport.addr = f"{advertised}:{frontend.transport.addr.rpartition(':')[2]}"
    frontend.metrics = node.metrics  # (one metrics port: the request histogram is shared)
    if node.metrics is not None:  # (its counters under its own name)
        node.metrics.co_hosted.append(frontend)
    await serve(nursery, frontend, metrics=False, stop_handler=False)
    await serve_clients(nursery, frontend, clients.ws_listen, clients.ssl_context)
    log.info("node %s serves clients on %s://%s (its frontend %s)", node.core.name,
             "wss" if clients.ssl_context else "ws", clients.ws_listen, frontend.core.name)


def _remembered_port(host: str, path: str | None) -> int:
    """The internal port the node's frontend had before a restart, if it is free: at the
    same address the manager takes it back at once (at a new one it refuses the name as
    a second process's until the old address has been silent for the failure timeout)."""
    try:
        with open(path or "") as f:
            port = int(f.read().strip())
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        return port
    except (OSError, ValueError):
        return 0  # (none yet, or taken: any free port)


def _remember_port(path: str, port: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(port + "\n")
    except OSError as exc:
        log.warning("could not record the frontend's port in %s: %s", path, exc)


async def run_manager(listen: str, config: ManagerConfig, data_dir: str | None = None,
                      name: str = "manager", task_status=trio.TASK_STATUS_IGNORED):
    state = FileState(os.path.join(data_dir, name + ".state")) if data_dir else None
    core = ManagerCore(config, wall_clock(), MANAGER, monotonic=time.monotonic, state=state)
    driver = Driver(core, None)
    driver.attach(Transport(MANAGER, "manager", listen, driver.on_message))
    async with trio.open_nursery() as nursery:
        await serve(nursery, driver, member=False)
        log.info("manager listening on %s", listen)
        task_status.started()


async def _awaited(fn):
    return await fn()


class _CurrentDriver:
    """(Metrics of an elected manager: the driver of its current term.)"""

    def __init__(self, current: list) -> None:
        self._current = current

    def __getattr__(self, name: str):
        return getattr(self._current[0], name)


async def run_elected_manager(listen: str, config: ManagerConfig, etcd_url: str, prefix: str,
                              task_status=trio.TASK_STATUS_IGNORED):
    """One of a DC's managers, in an election through etcd at ``etcd_url`` under
    ``prefix`` (one prefix per DC)."""
    name = manager_name(listen)
    client = EtcdClient(etcd_url)
    seat = Leadership(client, prefix, name)
    current: list[Driver] = []
    serving = [False]
    transport = Transport(name, "manager", listen, lambda src, msg: current[0].on_message(src, msg))
    try:
        async with trio.open_nursery() as nursery:
            install_stop_handler(nursery)
            await nursery.start(transport.serve)
            log.info("manager %s listening on %s, standing in the election at %s%s", name,
                     listen, etcd_url, prefix)
            task_status.started()
            while True:
                core = ManagerCore(config, wall_clock(), name, monotonic=time.monotonic,
                                   standby=True)
                driver = Driver(core, transport)
                current[:] = [driver]
                if Driver.metrics_listen and not serving[0]:
                    # (one server for every term: it reads whichever driver is current)
                    from .metrics import ProcessMetrics, serve_metrics

                    metrics = ProcessMetrics(_CurrentDriver(current), None)
                    await nursery.start(serve_metrics, metrics, Driver.metrics_listen)
                    serving[0] = True
                try:
                    await _serve_one_term(driver, seat)
                except* (LostLeadership, SyncFailed, EtcdUnavailable) as group:
                    log.warning("manager %s steps down: %s", name, group.exceptions[0])
                    await seat.resign()
    finally:
        with trio.CancelScope(shield=True):
            await seat.resign()  # a clean stop: a standby takes over at once
            await client.aclose()


async def _serve_one_term(driver: Driver, seat: Leadership) -> None:
    """Stand by (the core hears heartbeats) until we lead, then manage until we do not."""
    async with trio.open_nursery() as term:
        term.start_soon(driver.run_timers)
        await seat.campaign()
        saved = await seat.load()
        state = CommittedState(seat)
        driver.durable, driver.run_sync = state, _awaited
        term.start_soon(driver.run_group_commit)
        driver.run(driver.core.promote(saved, state, driver.clock()))
        log.warning("manager %s is active: ring epoch %d", seat.name, driver.core.ring.epoch)
        await seat.hold()
