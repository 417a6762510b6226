"""TLS contexts from certificate files (issue 18, security): ``wss://`` for clients
(frontend ``--tls-cert/--tls-key``, SDK ``ssl_context``, CLI ``--ca-file``) and TLS on the
links between datacenters (proxy ``--wan-tls-cert/--wan-tls-key/--wan-tls-ca``: mutual,
every proxy shows a certificate the CA signed; runtime/transport.py)."""

from __future__ import annotations

import os
import ssl


def _load(context: ssl.SSLContext, cert: str | None, key: str | None,
          ca: str | None) -> ssl.SSLContext:
    for what, path in (("certificate", cert), ("key", key), ("CA", ca)):
        if path and not os.path.isfile(path):
            raise ValueError(f"TLS {what} file {path}: no such file")
    try:
        if cert:
            context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(cafile=ca)
    except FileNotFoundError as exc:
        raise ValueError(f"{exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot load the TLS certificate/key/CA ({cert}, {key}, {ca}): "
                         f"{exc}") from None
    return context


def server_context(cert: str, key: str | None, ca: str | None = None) -> ssl.SSLContext:
    """A listener's: shows ``cert``; with ``ca``, demands a client certificate it signed."""
    context = _load(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert, key, ca)
    if ca:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: str | None = None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext | None:
    """A dialer's: verifies the server against ``ca`` (None and no ``cert``: the
    defaults, i.e. None), shows ``cert`` if given."""
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    return _load(context, cert, key, ca)
