"""docs/protocol.md must stay true to the code: a client written from the doc alone has
to see every op, reply field and error code the frontend uses, with the right retry
semantics (issue 13, item 5)."""

from __future__ import annotations

import os
import re

from chainreaction import messages as m

DOC = open(os.path.join(os.path.dirname(__file__), "..", "docs", "protocol.md")).read()
CODES = {value for name, value in vars(m).items()
         if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+", value)
         and name in ("BAD_FRAME", "BAD_REQUEST", "UNKNOWN_OP", "KEY_TOO_LARGE",
                      "VALUE_TOO_LARGE", "WRONG_EPOCH", "NOT_HEAD", "NOT_TAIL",
                      "NOT_IN_CHAIN", "NOT_READY", "UNAVAILABLE", "DEPENDENCY_TIMEOUT",
                      "OVERLOADED", "INTERNAL")}


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def test_every_client_op_is_documented_in_the_request_table():
    op_row = next(line for line in _section("### 2.1 Requests").splitlines()
                  if line.startswith("| `op` |"))
    documented = set(re.findall(r'"([a-z]+)"', op_row))
    assert documented == set(m.CLIENT_OPS)
    for op in m.CLIENT_OPS:  # and each one's reply
        assert re.search(rf"^\| [a-z, ]*\b{op}\b[a-z, ]* \| `\{{", _section("### 2.2 Replies"),
                         re.M), op


def test_every_error_code_is_in_the_table_with_its_retry_semantics():
    rows = {}
    for line in _section("## 4. Error codes").splitlines():
        match = re.match(r"^\| `([a-z_]+)` \| ([^|]+) \|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    assert CODES <= set(rows), CODES - set(rows)
    for code in CODES:
        assert rows[code] == ("yes" if code in m.RETRYABLE else "no"), code


def test_every_field_a_frontend_reply_can_carry_is_documented():
    import attrs

    fields = {"ok", "retryable"} | {f.name for reply in m.CLIENT_REPLIES
                                    for f in attrs.fields(reply)}
    fields -= {"id"}
    wire = {f for reply in (m.GetReply(1, True, b"v", None, 1, True, 0, 0, None),
                            m.ErrorReply(1, m.UNAVAILABLE, "x"))
            for f in reply.to_wire()}
    assert wire - {"id", "collected_floor"} <= fields  # to_wire sends what the class holds
    assert {"found", "chain_index", "stable", "past", "retryable"} <= fields
    replies = _section("### 2.2 Replies") + _section("### 2.1 Requests")
    missing = {f for f in fields if not re.search(rf"\b{f}\b", replies)}
    assert not missing, missing
