"""argparse types of the command line's addresses, names and labels (cli.py): each
refuses a bad value with one line that says what is expected."""

from __future__ import annotations

import argparse


def address(text: str) -> str:
    from ..runtime.transport import split_addr

    try:
        _host, port = split_addr(text)
    except ValueError as exc:
        example = f"127.0.0.1:{text if text.isdigit() else 7101}"
        raise argparse.ArgumentTypeError(f"{exc} (e.g. {example})") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0..65535")
    return text


def weight(text: str) -> int:
    from ..ring import MAX_WEIGHT

    if not text.isdigit() or not 1 <= int(text) <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"a weight is 1..{MAX_WEIGHT}, got {text!r}")
    return int(text)


def managers(text: str) -> str:
    from ..runtime.driver import parse_managers

    try:
        parse_managers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def dc_id(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**16:
        raise argparse.ArgumentTypeError(f"a dc id is 0..65535, got {value}")
    return value


def peer(text: str) -> tuple[int, str, str]:
    dc, sep, rest = text.partition("=")
    name, sep2, addr = rest.partition("@")
    if not (sep and sep2 and dc.isdigit() and name and ":" in addr):
        raise argparse.ArgumentTypeError(f"expected DC=NAME@HOST:PORT, got {text!r}")
    return int(dc), name, addr
