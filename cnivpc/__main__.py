"""Multi-call entry point (busybox style): ``cnivpc-ipam``, ``cnivpc-ipvlan`` and
``cnivpc-ptp`` (the argv[0] basename, i.e. the conflist ``type``) run that CNI plugin;
``cnivpc <plugin>`` does the same by hand (``cnivpc ipam`` only with CNI_COMMAND set and no
other argument: with a subcommand it is the operator's ``ipam`` group); anything else is the
operator CLI.

Imports only the stdlib and registries at module level: each path imports what it needs, so a
plugin exec pays for nothing else (VERSION imports neither pydantic, pyroute2 nor botocore).
"""

from __future__ import annotations

import os
import sys


def _without_pydantic_plugins() -> None:
    """pydantic looks for plugins of its own through importlib.metadata, which scans every
    installed distribution: tens of ms per exec (seconds under UML) for nothing we use. The
    environment switch stops the scan, but pydantic's loader module still imports
    importlib.metadata (email, zipfile, csv...: ~30 ms and ~50 modules per exec, measured),
    so a plugin process gets a loader with the same answer and none of those imports.
    The zipapp ships no pydantic plugin, so the answer is exact; tests/unit/test_main.py
    checks that pydantic asks the loader for nothing else."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        import types

        loader = types.ModuleType(name, "cnivpc: no pydantic plugins in a plugin process")
        loader.get_plugins = tuple  # type: ignore[attr-defined]  # () : no plugins
        sys.modules[name] = loader


def run_plugin(program: str) -> int:
    _without_pydantic_plugins()
    from . import __version__, plugins
    from .cni.skel import Dispatcher

    return Dispatcher(name=program, load=lambda: plugins.load(program), version=__version__).run()


def _runs_plugin(args: list[str]) -> bool:
    """``cnivpc ptp`` and ``cnivpc ipvlan`` always run the plugin by hand. ``cnivpc ipam`` is
    also the operator's command group (``cnivpc ipam enis``…): it runs the plugin only when
    called bare with a CNI_COMMAND in the environment, as a runtime would."""
    if args[0] != "ipam":
        return True
    return len(args) == 1 and bool(os.environ.get("CNI_COMMAND"))


def main(argv: list[str] | None = None) -> int:
    from .plugins import FUSED, PLUGINS

    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else "cnivpc"
    if program in PLUGINS:
        return run_plugin(program)
    args = argv[1:]
    if program == FUSED and not args and os.environ.get("CNI_COMMAND"):
        return run_plugin(FUSED)  # a runtime exec'ing the fused plugin (type "cnivpc")
    if args and f"cnivpc-{args[0]}" in PLUGINS and _runs_plugin(args):
        return run_plugin(f"cnivpc-{args[0]}")
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
