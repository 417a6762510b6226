"""Operator mistakes get one clear line (issue 18): what to fix, never a traceback and
never silence. Real processes on 127.0.0.1."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest
import trio

from chainreaction.runtime.probe import process_stats
from tests.e2e_helpers import assert_dc_serves, free_base_port, running_cluster

pytestmark = pytest.mark.e2e


def chainreaction(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chainreaction", *args], capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The process failed with one line on stderr and no traceback; that line."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, done.stderr
    return lines[0]


_unread: dict = {}  # process -> what was read from its stderr and not looked at yet


def line_with(process: subprocess.Popen, text: str, timeout_s: float) -> str:
    """The first line of ``process``'s stderr holding ``text``, or "" after ``timeout_s``
    (never blocks past it: select on the pipe, raw reads)."""
    deadline = time.monotonic() + timeout_s
    fd = process.stderr.fileno()
    while True:
        buffered = _unread.get(process, b"")
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            _unread[process] = buffered
            if text.encode() in line:
                return line.decode(errors="replace")
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 65536)
        if not chunk:
            return ""
        _unread[process] = buffered + chunk


def test_a_data_dir_that_is_a_file_is_named_as_the_problem(tmp_path):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    port = free_base_port(20)
    line = one_error_line(chainreaction("cluster", "up", "--data-dir", str(a_file),
                                        "--base-port", str(port)))
    assert f"--data-dir {a_file} is a file" in line
    line = one_error_line(chainreaction("node", "--name", "n1", "--listen",
                                        f"127.0.0.1:{port}", "--manager",
                                        f"127.0.0.1:{port + 1}", "--data-dir", str(a_file)))
    assert "is a file" in line


def test_a_bad_address_is_refused_with_an_example():
    line = one_error_line(chainreaction("node", "--name", "n1", "--listen", "9201",
                                        "--manager", "127.0.0.1:9200", "--data-dir", "x"))
    assert "argument --listen: address must be HOST:PORT, got '9201'" in line
    assert "127.0.0.1:9201" in line
    line = one_error_line(chainreaction("frontend", "--name", "f1", "--listen",
                                        "127.0.0.1:1", "--ws", "127.0.0.1:99999",
                                        "--manager", "nonsense"))
    assert "--manager" in line or "--ws" in line


def test_a_second_node_on_a_live_nodes_data_dir_is_told_it_is_in_use(tmp_path):
    port = free_base_port(3)
    args = ("node", "--name", "n1", "--manager", f"127.0.0.1:{port + 2}", "--data-dir",
            str(tmp_path))
    first = subprocess.Popen([sys.executable, "-m", "chainreaction", *args, "--listen",
                              f"127.0.0.1:{port}"], stderr=subprocess.PIPE)
    try:
        assert "listening on" in line_with(first, "listening on", 30)
        line = one_error_line(chainreaction(*args, "--listen", f"127.0.0.1:{port + 1}"))
        assert "is in use by another process" in line and "--data-dir" in line
        # A manager that does not answer is not silent either: a warning that repeats.
        line = line_with(first, "no answer from the manager", 20)
        assert f"no answer from the manager at 127.0.0.1:{port + 2}" in line
        assert "still trying" in line
    finally:
        first.kill()
        first.wait()


def test_a_client_against_nothing_says_why():
    port = free_base_port(1)
    done = chainreaction("get", "k", "--url", f"ws://127.0.0.1:{port}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "cannot connect (Connection refused)" in done.stderr + done.stdout


async def test_a_second_n2_beside_the_live_one_is_refused_and_the_dc_keeps_serving(tmp_path):
    async with running_cluster(tmp_path) as cluster:
        manager = next(p for p in cluster.processes.values() if p.role == "manager")
        epoch = (await process_stats(manager.addr))["epoch"]
        port = free_base_port(1)
        second = subprocess.Popen(
            [sys.executable, "-m", "chainreaction", "node", "--name", "n2", "--listen",
             f"127.0.0.1:{port}", "--manager", manager.addr, "--data-dir",
             str(tmp_path / "elsewhere")], stderr=subprocess.PIPE)
        try:
            refusal = await trio.to_thread.run_sync(
                lambda: line_with(second, "refused by the manager", 30))
            assert "another node named n2 is live at" in refusal
            assert "give it another --name" in refusal
            await assert_dc_serves(cluster.urls_of(0), 50)  # the DC serves all along
            stats = await process_stats(manager.addr)
            assert stats["epoch"] == epoch  # the ring never flipped to the second n2
            assert stats["duplicate_name_refused"] >= 1
            # ... and the manager's link named n2 still goes to the live one: it hears of
            # the next ring (n3 killed), the second n2 does not take its messages
            cluster.kill("n3")
            with trio.fail_after(30):
                while (await process_stats(manager.addr))["epoch"] == epoch:
                    await trio.sleep(0.1)  # sleep-ok: until the manager notices n3 died
                new_epoch = (await process_stats(manager.addr))["epoch"]
                n2 = cluster.processes["n2"].addr
                while (await process_stats(n2))["epoch"] < new_epoch:
                    await trio.sleep(0.1)  # sleep-ok: until the live n2 has the ring
        finally:
            second.kill()
            second.wait()
        log = open(cluster.log_path(manager.name)).read()
        assert f"refused n2 from 127.0.0.1:{port}" in log
