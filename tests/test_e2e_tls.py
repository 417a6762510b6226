"""TLS (issue 18, security): clients over wss:// and the links between DCs over mutual TLS,
end to end on real processes; a client that does not trust the frontend's CA is refused
with a clear error, and a proxy whose certificate another CA signed is refused by the
other DCs."""

from __future__ import annotations

import ssl

import pytest
import trio

from chainreaction.client import ChainReactionError, connect
from chainreaction.runtime.probe import process_stats

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {}
    for what, blob in (("ca", ca.cert_pem), ("cert", cert.cert_chain_pems[0]),
                       ("key", cert.private_key_pem)):
        paths[what] = str(tmp_path / f"{what}.pem")
        blob.write_to_path(paths[what])
    # (the in-process tools that wait for the cluster trust it as a client would)
    monkeypatch.setenv("SSL_CERT_FILE", paths["ca"])
    return paths


async def test_wss_clients_and_tls_between_dcs_work_and_untrusted_peers_are_refused(
        tmp_path, certificate):
    # (with the cluster secret too: a listener that takes TLS and plain connections must
    # not wait for a first byte a plain dialer with a secret never sends: review)
    secret = tmp_path / "secret"
    secret.write_text("a secret of the whole cluster\n")
    secret.chmod(0o600)
    from chainreaction.runtime import secret as cluster_secret

    cluster_secret.use_file(str(secret))
    try:
        await _run(tmp_path, certificate, str(secret))
    finally:
        cluster_secret.use(None)


async def _run(tmp_path, certificate, secret_file):
    async with running_cluster(tmp_path, dcs=2, nodes=2, replication=2, frontends=1,
                               tls_cert=certificate["cert"], tls_key=certificate["key"],
                               tls_ca=certificate["ca"], secret_file=secret_file) as cluster:
        dc0, dc1 = cluster.urls_of(0), cluster.urls_of(1)
        assert all(url.startswith("wss://") for url in dc0 + dc1)
        trusted = ssl.create_default_context(cafile=certificate["ca"])
        async with await connect(dc0, ssl_context=trusted) as session:
            for i in range(20):
                await session.put(f"k{i}", b"v%d" % i)
        async with await connect(dc1, ssl_context=trusted) as session:
            with trio.fail_after(30):  # shipped to dc1 over the TLS link between the proxies
                while (await session.read("k19")).value != b"v19":
                    await trio.sleep(0.05)  # sleep-ok: polling the WAN's delivery
            assert (await session.read("k0")).value == b"v0"
        proxy = next(p for p in cluster.processes.values() if p.role == "proxy")
        stats = await process_stats(proxy.addr)
        assert stats.get("link_tls", 0) >= 1 and not stats.get("link_tls_failed")
        assert not stats.get("auth_refused") and not stats.get("auth_no_challenge")
        # a client that does not trust the frontend's CA: refused, saying why
        import trustme

        untrusted = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts another CA only
        trustme.CA().configure_trust(untrusted)
        with pytest.raises(ChainReactionError) as refused:
            async with await connect(dc0, ssl_context=untrusted, timeout_s=3) as session:
                await session.put("x", b"y")
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) or "certificate" in str(
            refused.value).lower()
