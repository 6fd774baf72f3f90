"""numba's compiled code kept on disk across processes, so UMAP's JIT is paid once per machine.

A fresh process used to spend 20-60 s compiling umap-learn's numba functions before the first
layout: umap-learn declares none of them `cache=True` (pynndescent declares most). numba's own
per-function switch is `Dispatcher.enable_caching()` (what `cache=True` calls); `import_umap`
turns it on for every umap-learn and pynndescent function that lacks it, before the first call.
A second process then loads the machine code in well under a second.

Where: `$NUMBA_CACHE_DIR` when set (the test suite sets one per session; CI may pin one), else
the user cache directory `vista-tui-numba`. Not the map store: a store may be read-only, shared over NFS
between machines, or passed per command with --cache, while compiled code belongs to this
machine's CPU and this environment's numba (numba keys every entry by both, and by the source
file's timestamp, so a stale or foreign entry is recompiled, never run). When the directory
cannot be written, nothing is cached and the layout still runs, paying the JIT.

One numba detail decides what is safe to switch on: a cache file is named after the Python
function, not the dispatcher. umap-learn wraps one function in two dispatchers (serial and
parallel SGD epochs); only one of such a pair gets the cache (the serial one, which the seeded
layout uses), so they can never load each other's code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ENV = "NUMBA_CACHE_DIR"
CACHED_PACKAGES = ("umap", "pynndescent")
"""Packages whose numba functions get an on-disk cache."""


def default_cache_dir() -> Path:
    """The user cache directory `vista-tui-numba` (platformdirs), beside the default store, not in it."""
    import platformdirs  # small, pure Python

    return Path(platformdirs.user_cache_dir("vista-tui-numba"))


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def configure_cache_dir() -> Path | None:
    """Point numba's cache at `$NUMBA_CACHE_DIR` or the default; None when it cannot be written.

    Sets the environment variable (so child processes, Ray workers included, share the cache)
    and, when numba is already imported, its live config as well.
    """
    directory = Path(os.environ[ENV]) if os.environ.get(ENV) else default_cache_dir()
    if not _writable(directory):
        return None
    os.environ[ENV] = str(directory)
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.CACHE_DIR = str(directory)  # numba read the variable at import: update the live value
    return directory


def _dispatchers(prefixes: tuple[str, ...]) -> dict[Any, list[Any]]:
    """Every numba CPU dispatcher defined at module level in the packages, grouped by Python function."""
    from numba.core.registry import CPUDispatcher

    by_function: dict[Any, list[Any]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in prefixes:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher):
                group = by_function.setdefault(value.py_func, [])
                if all(value is not seen for seen in group):
                    group.append(value)
    return by_function


def enable_disk_cache(prefixes: tuple[str, ...] = CACHED_PACKAGES) -> int:
    """Turn on numba's disk cache for the packages' dispatchers that lack it; how many were turned on.

    Call after importing the packages and after `configure_cache_dir`; functions compiled
    already (eager signatures) keep their code and are left alone.
    """
    from numba.core.caching import NullCache

    enabled = 0
    for group in _dispatchers(prefixes).values():
        if any(not isinstance(d._cache, NullCache) for d in group):
            continue  # declared cache=True (or enabled before): its file is taken
        # One cache file per Python function: with several dispatchers, cache the serial one only.
        serial = [d for d in group if not d.targetoptions.get("parallel")]
        chosen = group[0] if len(group) == 1 else serial[0] if len(serial) == 1 else None
        if chosen is None or chosen.overloads:
            continue
        chosen.enable_caching()
        enabled += 1
    return enabled


_configured: list[bool] = []
"""Holds one entry once `import_umap` has set the cache up in this process."""


def import_umap() -> ModuleType:
    """`import umap` with numba's compiled code cached on disk (see the module doc)."""
    # umap (numba, pynndescent) takes seconds to import; only the layout step pays it.
    if _configured:
        import umap

        return umap
    cached = configure_cache_dir() is not None
    import umap

    if cached:
        enable_disk_cache()
    _configured.append(cached)
    return umap
