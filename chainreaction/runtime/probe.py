"""Ask a running process for its counters (or send it an operator command) over the
internal protocol."""

from __future__ import annotations

import os

import trio

from .. import messages as m
from .transport import Transport


async def process_stats(addr: str, timeout_s: float = 3.0, reset_latencies: bool = False) -> dict:
    """``StatsReply.stats`` of the process listening on ``addr``; TooSlowError if silent."""
    return await ask(addr, m.StatsRequest(1, reset_latencies), timeout_s)


class Refused(Exception):
    """The process answered the request with an error (``code: detail``)."""


async def ask(addr: str, request, timeout_s: float = 3.0) -> dict:
    """Send ``request`` (answered with a StatsReply) to ``addr``; the reply's map.
    ``Refused`` if it answers with an ``Error`` (e.g. fault injection not allowed)."""
    replies: dict = {}
    got = trio.Event()

    def on_message(src, msg):
        if isinstance(msg, m.StatsReply):
            replies["stats"] = msg.stats
            got.set()
        elif isinstance(msg, m.Error):
            replies["error"] = f"{msg.code}: {msg.detail}"
            got.set()

    transport = Transport(f"probe-{os.getpid()}-{id(replies)}", "client", "127.0.0.1:0",
                          on_message)
    target = f"@{addr}"
    transport.learn(target, addr)
    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve)
            transport.send(target, request)
            await got.wait()
            nursery.cancel_scope.cancel()
    if "error" in replies:
        raise Refused(replies["error"])
    return replies["stats"]
