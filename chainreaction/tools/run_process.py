"""``chainreaction node|manager|frontend|proxy``: run one server process from its parsed
command line (cli.py builds the parser)."""

from __future__ import annotations

import errno
import gc
import logging
import os

import trio

from ..runtime import secret


def run_process(args) -> int:
    try:
        return _run_process(args)
    except BaseExceptionGroup as group:
        in_use = _address_in_use(group)
        if in_use is None:
            raise
        raise ValueError(in_use) from None
    except OSError as exc:
        in_use = _address_in_use(exc)
        if in_use is None:
            raise
        raise ValueError(in_use) from None


def _address_in_use(exc: BaseException) -> str | None:
    """One line for a port another process holds (--listen, --ws, --metrics-listen)."""
    if isinstance(exc, BaseExceptionGroup):
        return next(filter(None, map(_address_in_use, exc.exceptions)), None)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (f"an address it should listen on is in use ({exc.strerror}): another "
                "process holds the port; stop it or pick another --listen / --ws / "
                "--metrics-listen")
    return None


def _run_process(args) -> int:
    # Servers allocate many short-lived objects and few cycles: collect young objects less
    # often (the default threshold of 700 makes the collector a visible cost under load).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    from ..runtime.driver import Driver

    Driver.allow_fault_injection = args.allow_fault_injection  # (one driver per process)
    if secret.current() is None:
        logging.getLogger("chainreaction").warning(
            "no --secret-file: this process talks to any peer that reaches its port (keep "
            "them reachable by the cluster only)")
    Driver.metrics_listen = args.metrics_listen
    if args.advertise:
        from ..runtime.transport import advertise

        advertise(args.listen, args.advertise)
    if args.command == "node":
        Driver.placement = (args.host, args.zone, args.weight)
    data_dir = getattr(args, "data_dir", None)
    if data_dir and os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"--data-dir {data_dir} is a file, not a directory")
    if args.command == "node":
        from ..node import NodeConfig
        from ..runtime.processes import run_node

        config = NodeConfig(eager=args.eager, dc=args.dc, geo=bool(args.proxy),
                            proxy=args.proxy_name, tombstone_grace_s=args.tombstone_grace,
                            snapshot_retention_s=args.snapshot_retention)
        clients = None
        if args.ws:
            from frontend.core import FrontendConfig
            from ..runtime.processes import ServeClients

            clients = ServeClients(args.ws, FrontendConfig(
                dc=args.dc, geo=bool(args.proxy), proxy=args.proxy_name,
                local_node=args.name), _client_tls(args))
        elif args.tls_cert or args.tls_key:
            raise ValueError("--tls-cert/--tls-key are for --ws (clients' wss://)")
        trio.run(lambda: run_node(args.name, args.listen, args.manager, args.data_dir,
                                  config, durability=args.durability,
                                  proxy_addr=args.proxy, clients=clients))
    elif args.command == "manager":
        from ..manager import ManagerConfig
        from ..runtime.processes import run_elected_manager, run_manager

        config = ManagerConfig(replication=args.replication, vnodes=args.vnodes,
                               failure_timeout_s=args.failure_timeout,
                               startup_grace_s=args.failure_timeout)
        if args.etcd:
            if args.data_dir:
                raise ValueError("--etcd keeps the manager's state in etcd: drop --data-dir")
            trio.run(lambda: run_elected_manager(args.listen, config, args.etcd,
                                                 args.etcd_prefix))
        else:
            trio.run(lambda: run_manager(args.listen, config, data_dir=args.data_dir,
                                         name=args.name))
    elif args.command == "proxy":
        from remote_proxy.core import ProxyConfig
        from remote_proxy.server import run_proxy

        if any(dc == args.dc for dc, _, _ in args.peer):
            raise ValueError(f"--peer lists this proxy's own dc {args.dc}")
        config = ProxyConfig(dc=args.dc, peers=tuple((dc, name) for dc, name, _ in args.peer),
                             batch_interval_s=args.batch_interval / 1000,
                             max_batch_entries=args.batch_max)
        peers = {name: addr for _, name, addr in args.peer}
        wan_tls = None
        tls_files = (args.wan_tls_cert, args.wan_tls_key, args.wan_tls_ca)
        if any(tls_files):
            from ..runtime.tls import client_context, server_context

            if not all(tls_files):
                raise ValueError("TLS between DCs needs --wan-tls-cert, --wan-tls-key and "
                                 "--wan-tls-ca")
            wan_tls = (server_context(*tls_files), client_context(args.wan_tls_ca,
                                                                  *tls_files[:2]))
        trio.run(lambda: run_proxy(args.name, args.listen, args.manager, args.data_dir, config,
                                   peers, args.wan_delay / 1000, args.wan_jitter / 1000,
                                   durability=args.durability, wan_seed=args.wan_seed,
                                   wan_tls=wan_tls))
    else:
        from frontend.core import FrontendConfig
        from frontend.server import run_frontend

        config = FrontendConfig(read_from=args.read_from, dc=args.dc, geo=bool(args.proxy),
                                proxy=args.proxy_name,
                                unsafe_skip_dependency_checks=args.unsafe_skip_dependency_checks,
                                unsafe_independent_txn_reads=args.unsafe_independent_txn_reads)
        for flag, on in (("--unsafe-skip-dependency-checks",
                          config.unsafe_skip_dependency_checks),
                         ("--unsafe-independent-txn-reads", config.unsafe_independent_txn_reads)):
            if on:
                logging.getLogger("frontend").warning(
                    f"UNSAFE: {flag} is on: this frontend does NOT keep causal consistency "
                    "(for testing the checker only)")
        context = _client_tls(args)
        trio.run(lambda: run_frontend(args.name, args.listen, args.ws, args.manager, config,
                                      proxy_addr=args.proxy, ssl_context=context))
    return 0


def _client_tls(args):
    """The server context of ``--tls-cert/--tls-key`` (clients' wss://), or None."""
    from ..runtime.tls import server_context

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("wss:// needs both --tls-cert and --tls-key")
    return server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
