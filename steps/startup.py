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


def resume() -> None:
    """Freeze what is loaded and run the collector again, if ``pause`` stopped it."""
    if _paused:
        _paused.clear()
        gc.freeze()
        gc.enable()
