"""Layering: the store's cores and the simulator stay free of I/O, servers and tools.

Checked by parsing every module's imports with ``ast`` (relative imports resolved; imports
inside functions count too, and so does every package ``__init__`` an import runs), and
following imports between the project's own modules, so that an indirect dependency is
caught as well as a direct one.

The rule: the core modules of ``chainreaction/`` (all but ``tools/`` and ``runtime/``),
``frontend/core.py``, the remote proxy's (``core.py``, ``shipper.py``, ``receiver.py``,
``stability.py``, ``log.py``) and everything in ``sim/`` import, directly or through
other project modules, nothing from ``chainreaction.tools``, ``chainreaction.runtime``,
``frontend.server``, ``remote_proxy.server``, ``remote_proxy.rocks_log``,
``chainreaction.rocks_store``, nor ``trio``, ``trio_websocket``, ``rocksdict`` or
``socket``. The cores are sans-IO and the simulator runs them on a simulated clock; I/O
belongs to the drivers and tools.

Three modules of ``chainreaction/`` are not held to all of it, on purpose:

* ``chainreaction/__main__.py`` is ``python -m chainreaction``: a two-line shim that runs
  the command line (``chainreaction.tools.cli``). It is an entry point, not core code.
* ``chainreaction/client.py`` is the SDK (with ``client_connection.py``, its one
  connection): a WebSocket client, so it imports ``trio`` and ``trio_websocket`` by nature (the sans-IO causality rules it applies are in
  ``session.py``). Everything else in the rule holds for it, and because imports are
  followed, no module held to the full rule may import it.
* ``chainreaction/rocks_store.py`` is itself a forbidden module: the rocksdict store of
  the node's driver.

``sim/__main__.py`` (``chainreaction sim``, a command line) needs no exception: it runs
the simulator and the checker, nothing from the tools. A second rule: apart from
``chainreaction/__main__.py``, nothing outside ``chainreaction/tools/`` imports the tools.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chainreaction", "frontend", "remote_proxy", "sim")

FORBIDDEN = ("chainreaction.tools", "chainreaction.runtime", "frontend.server",
             "remote_proxy.server", "remote_proxy.rocks_log", "chainreaction.rocks_store",
             "trio", "trio_websocket", "rocksdict", "socket")
SDK_MAY_IMPORT = ("trio", "trio_websocket", "socket")
ENTRY_POINT = "chainreaction.__main__"
SDK = "chainreaction.client"
SDK_MODULES = (SDK, "chainreaction.client_connection", "chainreaction.client_websocket")
PROXY_CORES = ("remote_proxy.core", "remote_proxy.log", "remote_proxy.shipper",
               "remote_proxy.receiver", "remote_proxy.stability")


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module ``module`` names in an import statement, relative ones resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base_name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                base_name = node.module
            found.add(base_name)
            for alias in node.names:  # ``from pkg import mod`` imports a module
                if f"{base_name}.{alias.name}" in MODULES:
                    found.add(f"{base_name}.{alias.name}")
    return frozenset(found)


def reachable(module: str) -> dict[str, list[str]]:
    """Every module imported from ``module``, directly or through project modules, with
    one import chain leading to it."""
    chains = {module: [module]}
    todo = [module]
    while todo:
        current = todo.pop()
        for name in imports_of(current):
            for target in _with_parents(name):
                if target not in chains:
                    chains[target] = [*chains[current], target]
                    if target in MODULES:
                        todo.append(target)
    return chains


def restricted_modules() -> dict[str, tuple[str, ...]]:
    """Module -> the forbidden prefixes that apply to it."""
    rules = {}
    for module in MODULES:
        if module.startswith("sim") or module in (
                "frontend.core", *PROXY_CORES):
            rules[module] = FORBIDDEN
        elif _matches(module, "chainreaction") and not any(
                _matches(module, p) for p in ("chainreaction.tools", "chainreaction.runtime",
                                              "chainreaction.rocks_store", ENTRY_POINT)):
            rules[module] = FORBIDDEN
    for module in SDK_MODULES:
        rules[module] = tuple(p for p in FORBIDDEN if p not in SDK_MAY_IMPORT)
    return rules


def test_cores_and_simulator_import_no_io_servers_or_tools():
    violations = []
    for module, forbidden in sorted(restricted_modules().items()):
        for name, chain in sorted(reachable(module).items()):
            if any(_matches(name, p) for p in forbidden):
                violations.append(" -> ".join(chain))
    assert not violations, "layering broken:\n  " + "\n  ".join(violations)


def test_only_the_entry_point_imports_the_tools():
    violations = [f"{module} imports {name}"
                  for module in sorted(MODULES)
                  if not _matches(module, "chainreaction.tools") and module != ENTRY_POINT
                  for name in sorted(imports_of(module))
                  if _matches(name, "chainreaction.tools")]
    assert not violations, "\n".join(violations)


def test_the_rule_covers_what_it_means_to():
    """Guards against a vacuous pass: the modules are found and the rule applies to them."""
    rules = restricted_modules()
    for module in ("chainreaction.node", "chainreaction.manager", "chainreaction.storage",
                   "chainreaction.latency", "chainreaction.checker.report",
                   "frontend.core", *PROXY_CORES, "sim.cluster", "sim.__main__"):
        assert rules.get(module) == FORBIDDEN, module
    assert "trio" not in rules[SDK] and "rocksdict" in rules[SDK]
    for module in ("chainreaction.tools.cli", "chainreaction.runtime.processes",
                   "chainreaction.rocks_store", "frontend.server", "remote_proxy.server",
                   "remote_proxy.rocks_log", ENTRY_POINT):
        assert module in MODULES and module not in rules, module


def test_imports_are_resolved_as_python_does():
    """Relative imports, ``from pkg import module``, imports inside functions, and the
    chains through other modules are all seen."""
    assert "chainreaction.messages" in imports_of("chainreaction.tools.bench")  # from .. import
    assert "chainreaction.tools.baselines" in imports_of("chainreaction.tools.bench")
    lazy = "chainreaction.runtime.processes"  # imported inside run_process
    assert lazy in imports_of("chainreaction.tools.run_process")
    assert "chainreaction.rocks_store" in imports_of("chainreaction.runtime.processes")
    assert "rocksdict" in imports_of("chainreaction.rocks_store")  # inside open_rocks
    assert reachable("remote_proxy.rocks_log")["rocksdict"] == [
        "remote_proxy.rocks_log", "chainreaction.rocks_store", "rocksdict"]
    assert "trio" in reachable(ENTRY_POINT)


def test_no_module_outgrows_one_responsibility():
    """Small modules with one job each: none over 700 lines (split by responsibility, as
    node.py was into state transfer, dependency checks, request ids and shipping)."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in _module_files().items()}
    assert len(sizes) > 50
    assert {name: n for name, n in sizes.items() if n > 700} == {}
