"""``--config FILE.toml`` for every process and for ``cluster up``: the same keys as the
flags (``listen = "127.0.0.1:7101"``, ``data-dir``/``data_dir``, ``allow-fault-injection =
true``, lists for repeated flags), read with ``tomllib``; a flag on the command line
overrides the file. An unknown key or a value of the wrong kind is one error line."""

from __future__ import annotations

import argparse
import tomllib


def config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def command_parser(parser: argparse.ArgumentParser, argv: list[str]):
    """The (sub)parser that will parse ``argv``'s command (``cluster up``: two levels)."""
    current, rest = parser, list(argv)
    while True:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        words = [w for w in rest if not w.startswith("-")]
        if not subs or not words or words[0] not in subs[0].choices:
            return current
        current = subs[0].choices[words[0]]
        rest = rest[rest.index(words[0]) + 1:]


def apply_config(parser: argparse.ArgumentParser, argv: list[str], path: str) -> None:
    """Make the file's values the defaults of the command's options (so flags win)."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read --config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path} is not valid TOML: {exc}") from None
    target = command_parser(parser, argv)
    options = {opt[2:]: a for a in target._actions for opt in a.option_strings
               if opt.startswith("--") and opt not in ("--help", "--config")}
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    for key, value in values.items():
        action = options.get(key) or options.get(key.replace("_", "-"))
        if action is None:
            raise ValueError(f"--config {path}: unknown key {key!r} for "
                             f"`{target.prog}` (known: {', '.join(sorted(options))})")
        if given & set(action.option_strings):
            continue  # (the command line's value wins, a repeated flag's list too)
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ValueError(f"--config {path}: {key} must be true or false")
        elif isinstance(action, argparse._AppendAction):
            value = value if isinstance(value, list) else [value]
            value = [action.type(str(v)) if action.type else str(v) for v in value]
        elif isinstance(value, (list, dict, bool)):
            raise ValueError(f"--config {path}: {key} must be a single value")
        else:
            try:
                value = action.type(str(value)) if action.type else str(value)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ValueError(f"--config {path}: {key}: {exc}") from None
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"--config {path}: {key} must be one of "
                             f"{', '.join(map(str, action.choices))}, got {value!r}")
        action.default = value
        action.required = False
