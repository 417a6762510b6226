"""``chainreaction backup`` / ``restore`` on real clusters: a backup taken while a causal
workload writes x_i then y_i never holds y_i without x_i, and a restore into a fresh
cluster reads back every key the backup holds."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import trio

from chainreaction.client import connect
from chainreaction.tools.backup import BackupError, backup, read_backup

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e

PRELOAD = 3000  # keys written before the backup: several pages per node
PAIRS = 20  # x_j, y_j written in that order, again and again, during the backup
# Each node pages through its keys in key order: x_j come first, y_j last, so a backup that
# read each key as it is when its page comes (no one cut) would see x_j old and y_j new.
X, Y = "a-x%d", "z-y%d"


def manager_of(cluster) -> str:
    (addr,) = [p.addr for p in cluster.processes.values() if p.role == "manager"]
    return addr


async def preload(urls: list[str]) -> None:
    async def part(start: int) -> None:
        async with await connect(urls) as session:
            for i in range(start, PRELOAD, 8):
                await session.put(f"pre{i:05d}", b"p%d" % i)

    async with trio.open_nursery() as nursery:
        for start in range(8):
            nursery.start_soon(part, start)


async def test_a_backup_while_x_then_y_are_written_never_holds_y_without_x_and_restores(
        tmp_path):
    out = str(tmp_path / "dc0.backup")
    async with running_cluster(tmp_path / "a", nodes=3, replication=3) as cluster:
        urls = cluster.urls_of(0)
        await preload(urls)
        writes = [0]
        stop, two_rounds = trio.Event(), trio.Event()

        async def writer() -> None:
            deadline = time.monotonic() + 60
            async with await connect(urls) as session:
                for i in range(1, 10_000):
                    for j in range(PAIRS):
                        await session.put(X % j, b"%d" % i)
                        await session.put(Y % j, b"%d" % i)
                        writes[0] += 2
                    if i == 2:
                        two_rounds.set()
                    if stop.is_set() or time.monotonic() > deadline:
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await two_rounds.wait()
            before = writes[0]
            summary = await backup(manager_of(cluster), 0, out, page=64)  # (many pages)
            during = writes[0] - before
            stop.set()
        assert during >= 1, "the workload wrote nothing while the backup ran"
    header, records = read_backup(out)
    assert header["dc"] == 0 and header["at"] == summary["at"]
    held = {key: value for key, value, _version in records}
    assert len(held) == len(records) == summary["keys"]  # one entry per key
    assert all(held[f"pre{i:05d}"] == b"p%d" % i for i in range(PRELOAD))
    for j in range(PAIRS):
        x, y = int(held.get(X % j, b"0")), int(held.get(Y % j, b"0"))
        assert y <= x, f"y{j}={y} without x{j}={y} (x{j}={x} in the backup)"
    assert any(int(held[X % j]) >= 2 for j in range(PAIRS))

    async with running_cluster(tmp_path / "b", nodes=3, replication=3) as fresh:
        argv = [sys.executable, "-m", "chainreaction", "restore", out,
                "--cluster", fresh.data_dir]
        done = await trio.to_thread.run_sync(lambda: subprocess.run(
            argv, capture_output=True, text=True, timeout=120))
        assert done.returncode == 0, done.stderr
        assert f"restored {len(records):,} keys" in done.stdout
        async with await connect(fresh.urls_of(0)) as session:
            keys = sorted(held)
            back = {}
            for start in range(0, len(keys), 200):
                back.update(await session.get_many(keys[start:start + 200]))
        assert back == held
        again = await trio.to_thread.run_sync(lambda: subprocess.run(
            argv, capture_output=True, text=True, timeout=60))
        assert again.returncode == 1 and "already holds" in again.stderr


async def test_a_backup_of_a_cluster_that_is_not_there_says_so(tmp_path):
    with pytest.raises(BackupError, match="did not send its ring"):
        await backup("127.0.0.1:9", 0, str(tmp_path / "none.backup"))
    assert not (tmp_path / "none.backup").exists()
    assert not (tmp_path / "none.backup.partial").exists()
