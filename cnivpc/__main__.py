"""Multi-call entry point (busybox style): ``cnivpc-ipam``, ``cnivpc-ipvlan`` and
``cnivpc-ptp`` (the argv[0] basename, i.e. the conflist ``type``) run that CNI plugin;
``cnivpc <plugin>`` does the same by hand (``cnivpc ipam`` only with CNI_COMMAND set and no
other argument: with a subcommand it is the operator's ``ipam`` group); anything else is the
operator CLI.

Imports only the stdlib and registries at module level: each path imports what it needs, so a
plugin exec pays for nothing else (VERSION imports neither pydantic_core, pyroute2 nor
botocore; no plugin command imports pydantic: the models run compiled, ``cni.compiled``). A
plugin process ends with ``os._exit`` once its answer is out (``_exit_now``).
"""

from __future__ import annotations

import os
import sys

GC_THRESHOLD = 100_000  # allocations between collections of the youngest generation


class _Missing:
    """Stands in for ``pydantic_core.MISSING`` until the real package is loaded: the
    serializer looks the name up and compares field values with it; no value of ours is it."""

    def __repr__(self) -> str:
        return "MISSING"


def _lazy_pydantic_core() -> None:
    """A plugin process validates without pydantic_core (``cni.compiled`` runs the schemas with
    ``cni.pyvalidate``); only ``model_dump`` with unusual options asks for its serializer, and
    the package's ``__init__`` would also build core_schema's
    hundreds of TypedDicts and imports typing_extensions: ~8 ms of CPU per exec for type hints.
    So ``pydantic_core`` starts as its package without the ``__init__`` run: asked for
    ``SchemaValidator`` or ``SchemaSerializer`` it loads only the extension; asked for anything
    else (``from pydantic_core import X``: pydantic itself, never on a plugin's path) it runs
    the real ``__init__`` in the same module first, so nothing can see the difference but the
    time. Nothing is loaded until then (VERSION loads nothing). tests/unit/test_main_lazy_core.py
    checks both ways."""
    name = "pydantic_core"
    if name in sys.modules:
        return
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    loader = spec.loader

    class LazyCore(types.ModuleType):
        loaded = False
        MISSING: object

        def __getattr__(self, attribute: str) -> object:
            if self.loaded or (attribute.startswith("_") and not attribute.startswith("__")):
                raise AttributeError(attribute)  # or a submodule the import system probes for
            if attribute in ("SchemaValidator", "SchemaSerializer"):
                from pydantic_core import _pydantic_core

                self.SchemaValidator = _pydantic_core.SchemaValidator
                self.SchemaSerializer = _pydantic_core.SchemaSerializer
            else:
                self.loaded = True
                loader.exec_module(self)
            return getattr(self, attribute)

    package = LazyCore(name, "pydantic_core, its __init__ not run yet (cnivpc)")
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.MISSING = _Missing()
    sys.modules[name] = package


def run_plugin(program: str) -> int:
    import gc

    # A plugin process lives for one request: the cyclic collector's passes over the objects
    # its imports create (every 700 allocations by default) find nothing to free. Rarely, not
    # never: the IPAM's cold path (EC2 calls, up to its timeout) stays bounded.
    gc.set_threshold(GC_THRESHOLD)
    _lazy_pydantic_core()
    from . import __version__, plugins
    from .cni.skel import Dispatcher

    code = Dispatcher(name=program, load=lambda: plugins.load(program), version=__version__).run()
    _exit_now(code)
    return code  # not reached


def _exit_now(code: int) -> None:
    """End a plugin process without the interpreter's teardown: its answer is written (and
    any work after it handed to a detached child), and a normal exit would still run the final
    garbage collection and tear down every module: 17-21 ms of CPU per exec for nothing
    (measured). So: flush the log handlers, stdout and stderr, then ``os._exit``. Only files
    we wrote need flushing (the state database commits before the answer; locks are released
    by the kernel with the descriptors)."""
    logs = sys.modules.get("cnivpc.cni.logs")
    if logs is not None:
        logs.flush()
    for target in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib is not imported on the VERSION path
            target.flush()
        except (OSError, ValueError):
            pass  # nobody left to read it
    os._exit(code)


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
