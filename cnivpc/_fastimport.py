"""Cheaper imports for a process started from the extraction (the launcher's way in: the
build's ENTRY script calls ``install`` before anything else of cnivpc).

A plugin exec imports ~160 modules, and the standard machinery makes ~11 system calls for
each: stat the directory (has it changed since it was listed?), stat the ``.py`` (is it
there?), stat it again (its mtime, to validate the ``.pyc``), then read the ``.pyc`` through
``io.open_code``: open, fstat, an isatty ioctl, two lseeks, fstat, two reads, close. On a
host that is about a millisecond per exec; in user-mode-linux, where a system call costs
~55 us, it is 50-70 ms of CPU of a ptp ADD's ~900 (measured, both ways, in one boot).

So, in this process:

* below the extraction's site-packages, a submodule is found in a listing of its package's
  directory, taken once (the standard finder re-stats the directory before every import, in
  case a module appeared since: none does in a plugin process), without stat'ing the file;
* everywhere (the standard library too), a file is read with open, fstat, read, close.

The ``.pyc`` is still validated against its source as usual (one stat): an operator who edits
a file of the extraction to debug sees the edit. Everything else (top-level names, which must
keep ``sys.path``'s order; namespace and extension packages; writing a ``.pyc`` for a new
interpreter) is the standard machinery's.

Only what the interpreter has already loaded (importlib's frozen parts, ``_imp``): importing
this costs no other module. Imports nothing of cnivpc.
"""

from __future__ import annotations

import _imp
import os
import sys

TYPE_CHECKING = False  # typing itself is not loaded yet when this runs
if TYPE_CHECKING:
    from typing import Any

_external: Any = sys.modules["_frozen_importlib_external"]


def read_file(path: str) -> bytes:
    """The whole of ``path``: open, fstat, read (again only after a short read), close."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size) if size else b""
        while len(data) < size:
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    return data


class SourceLoader(_external.SourceFileLoader):  # type: ignore[misc]
    """The standard source loader (``.pyc`` validated and written as usual), reading files
    with fewer system calls."""

    def get_data(self, path: str) -> bytes:
        return read_file(path)


class ExtractedFinder:
    """Finds the submodules of the extraction's packages in directory listings."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") + "/"
        self.listings: dict[str, frozenset[str]] = {}
        self.extensions = tuple(_imp.extension_suffixes())

    def listing(self, directory: str) -> frozenset[str]:
        names = self.listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self.listings[directory] = names
        return names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not isinstance(path, list) or len(path) != 1 or \
                not (path[0] + "/").startswith(self.root):
            return None  # a top-level name, or a package outside the extraction
        directory, tail = path[0], fullname.rpartition(".")[2]
        names = self.listing(directory)
        if tail in names:
            package = f"{directory}/{tail}"
            if "__init__.py" not in self.listing(package):
                return None  # a namespace package, an extension package: the standard way
            origin = f"{package}/__init__.py"
            return _external.spec_from_file_location(
                fullname, origin, loader=SourceLoader(fullname, origin),
                submodule_search_locations=[package])
        for suffix in self.extensions:  # before the source, as the standard finder looks
            if tail + suffix in names:
                origin = f"{directory}/{tail}{suffix}"
                return _external.spec_from_file_location(
                    fullname, origin, loader=_external.ExtensionFileLoader(fullname, origin))
        if f"{tail}.py" in names:
            origin = f"{directory}/{tail}.py"
            return _external.spec_from_file_location(
                fullname, origin, loader=SourceLoader(fullname, origin))
        return None


def install(root: str) -> None:
    """Find the extraction's submodules under ``root`` (its site-packages) by listing, and
    read every source-loaded module's files with fewer system calls. Once per process."""
    if any(isinstance(finder, ExtractedFinder) for finder in sys.meta_path):
        return
    at = next((i for i, f in enumerate(sys.meta_path) if f is _external.PathFinder),
              len(sys.meta_path))
    sys.meta_path.insert(at, ExtractedFinder(root))
    sys.path_hooks.insert(0, _external.FileFinder.path_hook(
        (_external.ExtensionFileLoader, _imp.extension_suffixes()),
        (SourceLoader, _external.SOURCE_SUFFIXES),
        (_external.SourcelessFileLoader, _external.BYTECODE_SUFFIXES)))
    sys.path_importer_cache.clear()  # the finders made before the hook: made again with it
