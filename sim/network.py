"""How the simulated network delays, drops and serialises messages.

Latencies are drawn per message from one seeded ``random.Random`` (the cluster's). By
default messages on one link may overtake each other: a harsher network than TCP's
per-link FIFO, which the protocol tolerates (the protocol tests use it). ``fifo=True``
keeps each link's order, as the real TCP links do (experiments use it: a remote proxy
drops a batch that overtook its predecessor and waits for the resend). ``loss`` drops a message between processes outright (a TCP
connection reset loses what was in flight); client <-> frontend traffic is never dropped,
a client's own timeout covers a dead frontend. ``wan_bandwidth`` (bytes/s per direction of
each WAN link) adds serialisation delay in FIFO order per link, from the encoded size.
The delay distributions (``Latency``) are ``chainreaction/netmodel.py``'s, which the real
remote proxy's WAN emulation draws from too.
"""

from __future__ import annotations

import attrs

from chainreaction.netmodel import DISTRIBUTIONS, FifoLinks, Latency  # noqa: F401 (re-exported)

@attrs.frozen
class NetworkModel:
    intra_dc: Latency = Latency.between(0.0002, 0.002)
    wan: Latency = Latency.between(0.02, 0.03)
    # per unordered DC pair, e.g. {(0, 1): Latency(0.06, 0.002)}; others use ``wan``
    wan_pairs: dict = attrs.field(factory=dict)
    loss: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0),
                                                      attrs.validators.lt(1.0)])
    wan_bandwidth: float | None = None  # bytes/s per WAN link direction; None: unlimited
    fifo: bool = False  # per-link order kept (TCP), else messages may overtake

    def __attrs_post_init__(self):
        if self.wan_bandwidth is not None and self.wan_bandwidth <= 0:
            raise ValueError("wan_bandwidth must be positive (bytes/s) or None")

    def wan_latency(self, a: int, b: int) -> Latency:
        return self.wan_pairs.get((a, b)) or self.wan_pairs.get((b, a)) or self.wan
