"""etcd, through its v3 JSON gateway (``/v3/...``), with httpx on trio: what the managers
of a DC coordinate through (``manager_process.py``). Only what they need: leases, reading
a key, and transactions that create a key or put one under a guard.

Every call is bounded by ``timeout_s``; an etcd that does not answer, or answers with
an error, raises ``EtcdUnavailable``. Keys and values are bytes (the gateway carries them
in base64); revisions are ints (it carries them as strings).
"""

from __future__ import annotations

import base64

import logging

import attrs
import httpx

# (httpx logs every request at INFO: several a second for each manager)
logging.getLogger("httpx").setLevel(logging.WARNING)


class EtcdUnavailable(Exception):
    """etcd did not answer, or refused the request."""


@attrs.frozen
class KeyValue:
    value: bytes
    create_revision: int
    mod_revision: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kv(raw: dict) -> KeyValue:
    return KeyValue(base64.b64decode(raw.get("value", "")), int(raw.get("create_revision", 0)),
                    int(raw.get("mod_revision", 0)))


class EtcdClient:
    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an etcd URL looks like http://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict) -> dict:
        try:
            response = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise EtcdUnavailable(f"etcd at {self.url}: {exc!r}") from None
        if response.status_code != 200:
            raise EtcdUnavailable(f"etcd at {self.url}: {path} answered "
                                  f"{response.status_code} {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise EtcdUnavailable(f"etcd at {self.url}: {path} answered no JSON") from None

    async def grant(self, ttl_s: int) -> tuple[int, int]:
        """A new lease: (its id, the TTL etcd gave it, which may be longer)."""
        reply = await self._post("/v3/lease/grant", {"TTL": ttl_s})
        return int(reply["ID"]), int(reply.get("TTL", ttl_s))

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease``: the seconds it has left now, 0 if it has expired."""
        reply = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now: the keys attached to it go with it."""
        await self._post("/v3/lease/revoke", {"ID": str(lease)})

    async def get(self, key: bytes) -> KeyValue | None:
        reply = await self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def create(self, key: bytes, value: bytes, lease: int) -> tuple[bool, int]:
        """Put ``key`` (attached to ``lease``) only if it does not exist: (created, the
        revision of the key that exists now: ours if created)."""
        reply = await self._post("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value),
                                         "lease": str(lease)}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        })
        if reply.get("succeeded"):
            return True, int(reply["header"]["revision"])
        kvs = reply["responses"][0]["response_range"].get("kvs") or []
        return False, _kv(kvs[0]).create_revision if kvs else 0

    async def put_if_created_at(self, key: bytes, value: bytes, guard: bytes,
                                guard_revision: int) -> bool:
        """Put ``key`` only while ``guard`` is the key created at ``guard_revision`` (the
        leadership that revision won has not ended): whether it was put."""
        reply = await self._post("/v3/kv/txn", {
            "compare": [{"key": _b64(guard), "target": "CREATE",
                         "create_revision": str(guard_revision)}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        })
        return bool(reply.get("succeeded"))
