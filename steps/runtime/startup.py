"""Process start-up: load the libraries without the garbage collector's passes over them.

Importing scikit-learn, SciPy, pandas, matplotlib and skops (and composing the config)
creates millions of objects, and the cyclic garbage collector's passes over them while
they load cost a large share of the start-up time. An entrypoint calls ``pause`` first
and ``resume`` once its libraries are loaded: what was loaded is moved out of every
later collection (``gc.freeze``) and the collector runs again as before.
"""

from __future__ import annotations

import gc

_paused: list[bool] = []


def pause() -> None:
    """Stop the cyclic garbage collector until ``resume`` (an entrypoint's first call)."""
    if not _paused and gc.isenabled():
        gc.disable()
        _paused.append(True)


def resume(freeze: bool = True) -> None:
    """Run the collector again, if ``pause`` stopped it; first freeze what is loaded.

    A command that ends right after its work (``freeze=False``) leaves the objects
    to the collector instead: nothing is kept for good in a process that goes on.
    """
    if _paused:
        _paused.clear()
        if freeze:
            gc.freeze()
        gc.enable()
