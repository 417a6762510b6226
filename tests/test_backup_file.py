"""The backup file (tools/backup.py): a whole file reads back; anything else is refused
with a message that says what is wrong, never loaded in part."""

from __future__ import annotations

import cbor2
import pytest

from chainreaction.tools.backup import FORMAT, BackupError, read_backup
from chainreaction.versions import Version

HEADER = {"format": FORMAT, "version": 1, "dc": 2, "at": 1_000, "epoch": 3,
          "created": "2026-12-04T00:00:00Z"}
RECORDS = [["a", b"1", [5, 2]], ["b", b"", [6, 0]]]


def write(path, *items) -> str:
    with open(path, "wb") as f:
        for item in items:
            cbor2.dump(item, f)
    return str(path)


def test_a_whole_backup_reads_back(tmp_path):
    path = write(tmp_path / "ok", HEADER, *RECORDS, {"end": True, "keys": 2, "bytes": 1})
    header, records = read_backup(path)
    assert header == HEADER
    assert records == [("a", b"1", Version(5, 2)), ("b", b"", Version(6, 0))]


@pytest.mark.parametrize("items, why", [
    ((HEADER, *RECORDS), "truncated: it ends after 2 keys"),
    ((HEADER, *RECORDS, {"end": True, "keys": 3, "bytes": 1}), "footer counts 3 keys"),
    (({"format": "other"},), "not a chainreaction backup"),
    (({**HEADER, "version": 9},), "format version 9"),
    ((HEADER, ["a", b"1"], {"end": True, "keys": 1, "bytes": 1}), "damaged after 0 keys"),
    ((HEADER, [1, b"1", [5, 2]], {"end": True, "keys": 1, "bytes": 1}), "damaged"),
    ((), "not a chainreaction backup"),
])
def test_a_backup_that_is_not_whole_is_refused(tmp_path, items, why):
    with pytest.raises(BackupError, match=why):
        read_backup(write(tmp_path / "bad", *items))


def test_a_file_cut_inside_a_record_is_refused(tmp_path):
    path = write(tmp_path / "cut", HEADER, *RECORDS, {"end": True, "keys": 2, "bytes": 1})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) - 30])
    with pytest.raises(BackupError, match="damaged|truncated"):
        read_backup(path)
    with pytest.raises(BackupError, match="cannot read"):
        read_backup(str(tmp_path / "missing"))
