"""The systems an experiment compares: read/write policies of the same node code.

Every system runs the real node, frontend and proxy cores; only the knobs differ:

* ``chainreaction``: writes acked after the first k nodes, reads at any chain position
  the session proved safe (its chainIndex), dependency checks (the store as shipped).
* ``chain-replication``: classic chain replication as in FAWN-KV: writes acked by the
  tail (k = R), every read at the tail. Linearizable in a DC.
* ``craq``: CRAQ: writes acked by the tail; a read goes to any chain node, which answers
  only with a version the tail has (clean); a dirty key sends the read on to the tail.
  (CRAQ's node asks the tail for the committed version number and serves that version
  from its own store; here the tail serves it: the same hops, a larger tail reply.)
* ``cr-cops``: chain replication in each DC (tail acks, tail reads) plus causal
  consistency across DCs through the same remote proxies and dependency checks.
* ``cops-gt``: ChainReaction with COPS-GT's two rounds for GET-TRANSACTIONs (frontend
  ``txn_policy``): versions of different instants in the first round are read again, all
  at the newest of them, as COPS-GT re-reads what the first answers' dependencies need.
* ``eventual``: any replica, no dependency checks, writes acked by the head alone (k = 1),
  like Cassandra at consistency ONE. Not causal: the checker finds anomalies in it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class System:
    name: str
    label: str
    read_from: str
    tail_acks: bool  # k = R (else the experiment's k; eventual: 1)
    unsafe: bool = False
    eager_one: bool = False
    txn_policy: str = "one-round"

    def cluster_kwargs(self, replication: int, eager: int) -> dict:
        """SimCluster arguments for this system at chain length ``replication``."""
        k = replication if self.tail_acks else (1 if self.eager_one else min(eager, replication))
        kwargs = {"read_from": self.read_from, "replication": replication, "eager": k,
                  "unsafe": self.unsafe}
        if self.txn_policy != "one-round":
            kwargs["frontend_config"] = {"txn_policy": self.txn_policy}
        return kwargs


SYSTEMS = {s.name: s for s in (
    System("chainreaction", "ChainReaction", "chain", tail_acks=False),
    System("chain-replication", "Chain replication (tail reads)", "tail", tail_acks=True),
    System("craq", "CRAQ", "craq", tail_acks=True),
    System("cr-cops", "CR-COPS", "tail", tail_acks=True),
    System("cops-gt", "COPS-GT two rounds", "chain", tail_acks=False, txn_policy="cops-gt"),
    System("eventual", "Eventual (any replica, k=1)", "chain", tail_acks=False, unsafe=True,
           eager_one=True),
)}
