"""The node and manager processes: open the store, build the core, run it with the driver.
(The frontend's and remote proxy's are in ``frontend/server.py`` and
``remote_proxy/server.py``: they add client WebSockets and the WAN.)"""

from __future__ import annotations

import logging
import os
import time

import trio

from ..manager import ManagerConfig, ManagerCore
from ..state_file import FileState
from ..node import NodeConfig, NodeCore
from ..rocks_store import RocksStore
from ..storage import DEFAULT_DURABILITY
from .driver import MANAGER, Driver, group_commit, serve, wall_clock
from .transport import Transport

log = logging.getLogger(__name__)


def build_node(name: str, listen: str, manager_addr: str, data_dir: str, config: NodeConfig,
               durability: str = DEFAULT_DURABILITY, proxy_addr: str | None = None) -> Driver:
    """A node's store, core, driver and transport, not yet serving."""
    store = RocksStore(os.path.join(data_dir, name), durability=durability)
    driver = Driver(NodeCore(name, store, config, wall_clock(), monotonic=time.monotonic), None,
                    durable=group_commit(store, durability))
    transport = Transport(name, "node", listen, driver.on_message)
    transport.learn(MANAGER, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver.attach(transport)
    return driver


async def run_node(name: str, listen: str, manager_addr: str, data_dir: str,
                   config: NodeConfig, durability: str = DEFAULT_DURABILITY,
                   proxy_addr: str | None = None, task_status=trio.TASK_STATUS_IGNORED):
    driver = build_node(name, listen, manager_addr, data_dir, config, durability, proxy_addr)
    store = driver.core.store
    try:
        async with trio.open_nursery() as nursery:
            await serve(nursery, driver)
            log.info("node %s listening on %s (%d keys on disk, durability %s)", name, listen,
                     len(store), durability)
            task_status.started()
    finally:
        store.close()


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
