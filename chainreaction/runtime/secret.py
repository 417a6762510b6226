"""The cluster secret (issue 18, security): every process and datacenter of a cluster
proves it knows the secret to every peer it connects to, and the secret never goes on
the wire.

How (runtime/transport.py): a process that has a secret opens every inbound connection
with a ``Challenge`` of 16 random bytes; the dialer answers with its ``Hello``, whose
``proof`` is HMAC-SHA256(secret, challenge + who it says it is). A ``Hello`` without the
right proof gets ``Error unauthenticated`` and the connection is closed: nothing the
peer sends is handled. Every connection carries messages one way (replies come back on
the other side's own connection, authenticated the same way), so each process checks
everything it handles.

One secret per process (``use``): from ``--secret-file`` of a server process, from
``cluster up --secret-file`` (recorded in cluster.json, so the tools working on that
cluster use it), or from the file named by ``CHAINREACTION_SECRET_FILE``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import cbor2

MIN_BYTES = 16
ENV = "CHAINREACTION_SECRET_FILE"
MAKE_ONE = "e.g. `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`"

_secret: bytes | None = None


def load(path: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace dropped); one line of error if it
    cannot be used."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"--secret-file {path}: no such file ({MAKE_ONE})") from None
    except OSError as exc:
        raise ValueError(f"--secret-file {path}: cannot read it ({exc.strerror})") from None
    if len(secret) < MIN_BYTES:
        raise ValueError(f"--secret-file {path}: the secret is {len(secret)} bytes, at least "
                         f"{MIN_BYTES} are needed ({MAKE_ONE})")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        import logging

        logging.getLogger(__name__).warning(
            "the secret file %s is readable by other users: chmod 600 it", path)
    return secret


def use(secret: bytes | None) -> None:
    """From now on this process's transports prove and demand ``secret`` (None: none)."""
    global _secret
    _secret = secret


def use_file(path: str | None) -> None:
    """``use`` the secret of ``path``, else of the file ``CHAINREACTION_SECRET_FILE``
    names, else none."""
    path = path or os.environ.get(ENV) or None
    use(load(path) if path else None)


def current() -> bytes | None:
    return _secret


def proof(secret: bytes, nonce: bytes, name: str, role: str, addr: str,
          incarnation: int) -> bytes:
    """What a ``Hello`` answers a ``Challenge`` with: binds the nonce to who it says it
    is (a proof for one connection is useless on another, or under another name)."""
    message = b"chainreaction-hello\0" + nonce + cbor2.dumps([name, role, addr, incarnation])
    return hmac.new(secret, message, hashlib.sha256).digest()


def valid(secret: bytes, nonce: bytes, hello) -> bool:
    expected = proof(secret, nonce, hello.name, hello.role, hello.addr, hello.incarnation)
    return hmac.compare_digest(expected, hello.proof)
