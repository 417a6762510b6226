"""Option groups the ``chainreaction`` commands share (cli.py builds the parser)."""

from __future__ import annotations

import argparse

from ..storage import DEFAULT_DURABILITY, DURABILITY_LEVELS
from .arg_types import address, dc_id


def process_options(p: argparse.ArgumentParser) -> None:
    """The options every server process has."""
    p.add_argument("--metrics-listen", type=address, metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--advertise", type=address, metavar="HOST:PORT",
                   help="the address peers dial, where it is not --listen (listening on "
                   "0.0.0.0, behind NAT, in a container); docs/deploy.md")
    fault_option(p)


def fault_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="options from a TOML file, the same "
                   "keys as the flags (listen = \"127.0.0.1:7101\"); flags override it")
    p.add_argument("--secret-file", metavar="FILE", help="the cluster secret (at least 16 "
                   "bytes): processes prove it to each other and refuse peers that do not; "
                   "never sent (default: $CHAINREACTION_SECRET_FILE, or none)")
    p.add_argument("--allow-fault-injection", action="store_true",
                   help="obey fault injection (clock skew and cut links from `jepsen`, `wan "
                   "cut`, the tests); off by default: anyone who can reach the port could "
                   "otherwise partition or skew the store")


def durability_options(p: argparse.ArgumentParser, whose: str = "") -> None:
    p.add_argument("--durability", choices=DURABILITY_LEVELS, default=DEFAULT_DURABILITY,
                   help=f"when {whose}writes reach the disk (default {DEFAULT_DURABILITY}). "
                   "none: never synced; a write survives kill -9 of the process, not a power "
                   "loss or OS crash. group: group commit; the writes handled in one pass are "
                   "synced together, once, before anything that acknowledges or forwards "
                   "them is sent; survives power loss too. every: each write synced on its "
                   "own; survives the same as group. Measured (docs/experiments.md): group "
                   "keeps about 2/3 of none's put throughput, every 10-30%%")
    p.add_argument("--fsync", action="store_const", const="every", dest="durability",
                   help="the same as --durability every")


def geo_member_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dc", type=dc_id, default=0, help="this DC's id (several DCs)")
    p.add_argument("--proxy", type=address, metavar="HOST:PORT",
                   help="this DC's remote proxy: turns on geo-replication")
    p.add_argument("--proxy-name", default="proxy", help="the proxy's --name")


def client_tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", metavar="FILE", help="serve clients wss:// with this "
                   "certificate (PEM, its chain included) and --tls-key")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
