"""``--config FILE.toml`` (tools/config_file.py): the same keys as the flags, flags win, and
a mistake in the file is one error line, not a traceback nor a silently ignored key."""

from __future__ import annotations

import pytest

from chainreaction.tools.cli import build_parser, main
from chainreaction.tools.config_file import apply_config


def parse(argv: list[str], toml: str, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    argv = [*argv, "--config", str(path)]
    parser = build_parser()
    apply_config(parser, argv, str(path))
    return parser.parse_args(argv)


NODE = '''
name = "n1"
listen = "127.0.0.1:7101"
manager = "127.0.0.1:7100"
data-dir = "/var/lib/cr"
eager = 2
allow-fault-injection = true
'''


def test_a_node_takes_every_option_from_the_file_and_a_flag_overrides_one(tmp_path):
    args = parse(["node"], NODE, tmp_path)
    assert (args.name, args.listen, args.manager, args.data_dir, args.eager) == (
        "n1", "127.0.0.1:7101", "127.0.0.1:7100", "/var/lib/cr", 2)
    assert args.allow_fault_injection is True and args.metrics_listen is None
    assert parse(["node", "--eager", "3"], NODE, tmp_path).eager == 3


def test_cluster_up_and_repeated_flags_take_lists(tmp_path):
    args = parse(["cluster", "up"], 'dcs = 3\nwan-delay = 50\nnodes = 4\n', tmp_path)
    assert (args.dcs, args.wan_delay, args.nodes) == (3, 50.0, 4)
    proxy = parse(["proxy"], 'name = "p0"\nlisten = "127.0.0.1:1"\nmanager = "127.0.0.1:2"\n'
                  'data-dir = "d"\ndc = 0\npeer = ["1=p1@127.0.0.1:3"]\n', tmp_path)
    assert proxy.peer == [(1, "p1", "127.0.0.1:3")]


def test_a_key_shared_by_two_flags_and_a_repeated_flag_on_the_command_line(tmp_path):
    """durability and --fsync write one destination; a --peer on the command line replaces
    the file's list rather than adding to it (review)."""
    assert parse(["node"], NODE + 'durability = "none"\n', tmp_path).durability == "none"
    proxy = parse(["proxy", "--peer", "2=p2@127.0.0.1:4"],
                  'name = "p0"\nlisten = "127.0.0.1:1"\nmanager = "127.0.0.1:2"\n'
                  'data-dir = "d"\ndc = 0\npeer = ["1=p1@127.0.0.1:3"]\n', tmp_path)
    assert proxy.peer == [(2, "p2", "127.0.0.1:4")]


@pytest.mark.parametrize("toml, why", [
    ('durability = "sometimes"\n', "durability must be one of"),
    ('name = "n1"\nlistn = "127.0.0.1:1"\n', "unknown key 'listn' for `chainreaction node`"),
    ('listen = "9201"\n', "listen: address must be HOST:PORT"),
    ('allow-fault-injection = "yes"\n', "must be true or false"),
    ('listen = [1, 2]\n', "must be a single value"),
    ('listen = \n', "is not valid TOML"),
])
def test_a_mistake_in_the_file_is_one_line(tmp_path, capsys, toml, why):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    assert main(["node", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_file_is_named(tmp_path, capsys):
    assert main(["node", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read --config" in capsys.readouterr().err
