"""`chainreaction get KEY --explain` (tools/explain.py): the read's node, position,
version and why it was causally safe, from what the session held before it."""

from __future__ import annotations

from chainreaction.client import ReadResult
from chainreaction.session import Entry
from chainreaction.versions import Version


def test_a_read_bounded_by_the_sessions_chain_index_says_so():
    from chainreaction.tools.explain import explain_read

    before = Entry(Version(1_796_000_000_000_000, 0), {0: 2})
    result = ReadResult(True, b"v", Version(1_796_000_000_500_000, 0), 2, False, 0, "n2")
    text = explain_read("k", result, before)
    assert "answered by n2, at position 2" in text
    assert "with chainIndex 2: only positions up to it" in text
    assert "not stable yet: the session now holds it with chainIndex 2" in text
    assert "written at 2026-" in text and "in dc0" in text  # (the clock as a UTC time)


def test_a_stable_or_absent_key_and_a_new_session():
    from chainreaction.tools.explain import explain_read

    stable = ReadResult(True, b"v", Version(5, 1), 3, True, 1, "n3")
    text = explain_read("k", stable, None)
    assert "held no entry for this key" in text and "stable: every replica" in text
    assert "in dc1" in text
    absent = explain_read("k", ReadResult(False, None, None, 1, False, 0, "n1"), None)
    assert "the key is absent" in absent
