"""``DIR/cluster.json``: the processes ``cluster up`` started, and how to start each again.

One entry per process: role, name, dc, address (a frontend's url too), pid, and all that
restarting it by hand takes:

* ``argv``: the exact command line, ``[python, "-m", "chainreaction", ROLE, ...]`` with the
  interpreter ``cluster up`` ran under;
* ``cwd``: where it ran (``python -m chainreaction`` imports from there when the package is
  not installed) and ``env``: the PYTHONPATH it had, if any;
* ``data``: what it keeps on disk and finds again on restart: a node's or a proxy's RocksDB
  directory ``DIR/NAME``, a manager's state file ``DIR/NAME.state``; null for a frontend,
  which keeps nothing;
* ``log``: the file its stdout and stderr are appended to.

So an operator restarts a process exactly as ``cluster up`` did with
``cd CWD && ARGV... >>LOG 2>&1``, and ``chainreaction cluster restart NAME`` /
``cluster kill NAME`` do it from the file alone, keeping its pid current. They find a
process by its recorded command line in ``/proc`` (which names its address and data, so
nothing else matches): a pid the kernel has since given to another program is never
touched, and a copy an operator started by hand is found too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time

FILE = "cluster.json"
ENV_KEPT = ("PYTHONPATH",)  # the environment a restart must repeat; nothing else is kept
ENTRY_KEYS = ("role", "name", "address", "pid", "argv", "cwd", "env", "data", "log")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP,
           "CONT": signal.SIGCONT}


def launch(argv: list, cwd: str, env: dict, log_path: str) -> subprocess.Popen:
    """Start one process as ``cluster up`` does: in its own session (a Ctrl-C meant for the
    operator's shell does not reach it), stdin closed, output appended to its log."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def write(data_dir: str, manifest: dict) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = os.path.join(data_dir, FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(data_dir, FILE))


def load(data_dir: str) -> dict:
    """The manifest, checked enough that acting on it cannot go wrong halfway."""
    path = os.path.join(data_dir, FILE)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"no {path}: is DIR the --data-dir of `chainreaction cluster up`?"
                         ) from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    processes = manifest.get("processes") if isinstance(manifest, dict) else None
    if not isinstance(processes, list) or not all(isinstance(p, dict) for p in processes):
        raise ValueError(f"{path} has no list of processes")
    for p in processes:
        missing = [k for k in ENTRY_KEYS if k not in p]
        if missing:
            raise ValueError(f"{path}: process {p.get('name', '?')} lacks {', '.join(missing)}"
                             " (written by an older `cluster up`? start the cluster again)")
        if not (isinstance(p["argv"], list) and p["argv"]
                and all(isinstance(a, str) for a in p["argv"])):
            raise ValueError(f"{path}: process {p['name']} has no command line")
    return manifest


def entry(manifest: dict, name: str) -> dict:
    for p in manifest["processes"]:
        if p["name"] == name:
            return p
    names = ", ".join(p["name"] for p in manifest["processes"])
    raise ValueError(f"no process named {name!r} in this cluster; its processes: {names}")


def scan() -> dict | None:
    """Command line (a tuple) -> pids of every live process; None without ``/proc``. A
    zombie (exited, not yet reaped by ``cluster up``) has an empty command line: not live."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    table: dict = {}
    for pid in entries:
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = tuple(os.fsdecode(a) for a in f.read().split(b"\0")[:-1])
            except OSError:
                continue  # exited meanwhile, or not ours to read
            if argv:
                table.setdefault(argv, []).append(int(pid))
    return table


def pids_of(p: dict, table: dict | None = None) -> list:
    """The live processes running ``p``'s recorded command line: its recorded pid, and any
    copy started by hand since. The command line names the process, its address and its
    data, so no unrelated program matches."""
    table = scan() if table is None else table
    if table is None:  # no /proc: trust the recorded pid
        try:
            os.kill(p["pid"], 0)
        except (ProcessLookupError, TypeError):
            return []
        return [p["pid"]]
    found = sorted(table.get(tuple(p["argv"]), []))
    return sorted(found, key=lambda pid: pid != p.get("pid"))  # the recorded one first


def running(p: dict) -> bool:
    return bool(pids_of(p))


def send_signal(data_dir: str, name: str, signame: str, timeout_s: float = 10.0) -> str:
    """``cluster kill NAME --signal SIG``; KILL and TERM return once the process is gone."""
    if signame not in SIGNALS:
        raise ValueError(f"unknown signal {signame!r}; choose from {', '.join(SIGNALS)}")
    p = entry(load(data_dir), name)
    pids = pids_of(p)
    if not pids:
        raise ValueError(f"{name} is not running (pid {p['pid']} is gone); "
                         f"`chainreaction cluster restart {name} --cluster {data_dir}` "
                         "starts it")
    for pid in pids:
        os.kill(pid, SIGNALS[signame])
        if signame == "TERM":
            os.kill(pid, signal.SIGCONT)  # a stopped process would never handle TERM
    which = f"pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))}"
    if SIGNALS[signame] in (signal.SIGKILL, signal.SIGTERM):
        if not _wait_gone(p, timeout_s):
            raise ValueError(f"{name} ({which}) still runs {timeout_s:g} s after "
                             f"SIG{signame}")
        return f"{name}: {which} ended by SIG{signame}"
    return f"{name}: sent SIG{signame} to {which}"


def restart(data_dir: str, name: str, timeout_s: float = 15.0) -> str:
    """``cluster restart NAME``: stop it if it runs (TERM, then KILL), start its recorded
    command line, record the new pid, and return once it accepts connections."""
    p = entry(load(data_dir), name)
    notes = []
    old = pids_of(p)
    if old:
        stop_all([p], timeout_s=5.0)
        notes.append(f"stopped pid {', '.join(map(str, old))}")
    popen = launch(p["argv"], p["cwd"], p["env"], p["log"])
    set_pid(data_dir, name, popen.pid)
    if not _wait_listening(p["address"], popen, timeout_s):
        if popen.poll() is not None:
            raise ValueError(f"{name} exited at once (code {popen.returncode}); the end of "
                             f"{p['log']}:\n{_tail(p['log'])}")
        raise ValueError(f"{name} (pid {popen.pid}) runs but does not listen on "
                         f"{p['address']} after {timeout_s:g} s; see {p['log']}")
    notes.append(f"started pid {popen.pid}, listening on {p['address']}")
    return f"{name}: {', '.join(notes)}"


def set_pid(data_dir: str, name: str, pid: int) -> None:
    manifest = load(data_dir)
    entry(manifest, name)["pid"] = pid
    write(data_dir, manifest)


def stop_all(entries: list, timeout_s: float = 5.0, spare: tuple = ()) -> None:
    """SIGTERM (and SIGCONT, for a stopped one) to every process running an entry's
    command line but the pids in ``spare``; SIGKILL to any left at the deadline."""
    table = scan()
    live = [(p, pid) for p in entries for pid in pids_of(p, table) if pid not in spare]
    for _, pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout_s
    for p, pid in live:
        if not _wait_gone(p, max(0.0, deadline - time.monotonic()), pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(p, 5.0, pid)


def _wait_gone(p: dict, timeout_s: float, pid: int | None = None) -> bool:
    """Not our child, so no wait(): poll /proc until no process (or not ``pid``) runs
    ``p``'s command line."""
    deadline = time.monotonic() + timeout_s
    while (pids := pids_of(p)) and (pid is None or pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_listening(address: str, popen: subprocess.Popen, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and popen.poll() is None:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
