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
from .driver import MANAGER, Driver, serve, wall_clock
from .transport import Transport

log = logging.getLogger(__name__)


async def run_node(name: str, listen: str, manager_addr: str, data_dir: str,
                   config: NodeConfig, fsync: bool = False, proxy_addr: str | None = None,
                   task_status=trio.TASK_STATUS_IGNORED):
    store = RocksStore(os.path.join(data_dir, name), fsync=fsync)
    driver = Driver(NodeCore(name, store, config, wall_clock(), monotonic=time.monotonic), None)
    transport = Transport(name, "node", listen, driver.on_message)
    transport.learn(MANAGER, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver.attach(transport)
    try:
        async with trio.open_nursery() as nursery:
            await serve(nursery, driver)
            log.info("node %s listening on %s (%d keys on disk)", name, listen, len(store))
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
