"""What cores ask their driver to do. Effects are data; the trio runtime and the simulator
are two interpreters of the same lists.

Ordering rule: a core writes to its store *before* it returns the ``Send`` effects that
announce the write, so anything a peer learns of is already durable (raft: persist before
send).
"""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class Send:
    """Deliver ``msg`` to the process named ``to`` (best effort, in order per link)."""

    to: str
    msg: object

    def __repr__(self) -> str:
        return f"->{self.to} {self.msg!r}"


@attrs.frozen(slots=True)
class ToClient:
    """Frontend only: send ``reply`` (one of ``messages.CLIENT_REPLIES``) on client
    connection ``conn``."""

    conn: int
    reply: object

