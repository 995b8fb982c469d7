"""The configured adapter: one instance per process, built from ``DJJOBS["ADAPTER"]``."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from django.utils.module_loading import import_string

from .. import conf
from ..errors import ConfigurationError
from .base import Adapter

_adapter: Adapter | None = None
_overrides: list[Adapter] = []
_lock = threading.Lock()


def adapter_class(name: str) -> type[Adapter]:
    """Resolve a name from the settings (a short name or a dotted path; settings are trusted, payloads never are)."""
    path = conf.ADAPTERS.get(name, name)
    if "." not in path:
        raise ConfigurationError(f"Unknown DJJOBS['ADAPTER'] {name!r}: use one of "
                                 f"{', '.join(sorted(conf.ADAPTERS))} or a dotted path to an Adapter subclass.")
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"DJJOBS['ADAPTER'] = {name!r} cannot be imported ({exc}).") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ConfigurationError(f"DJJOBS['ADAPTER'] = {name!r} is not a djjobs.adapters.base.Adapter subclass.")
    return cls


def get_adapter() -> Adapter:
    """The adapter jobs are enqueued through (a test override first)."""
    global _adapter
    if _overrides:
        return _overrides[-1]
    if _adapter is None:
        with _lock:
            if _adapter is None:
                _adapter = adapter_class(conf.get("ADAPTER"))(conf.get("OPTIONS"))
    return _adapter


def reset_adapter() -> None:
    """Close and forget the configured adapter (settings changed, or after fork)."""
    global _adapter
    with _lock:
        old, _adapter = _adapter, None
    if old is not None:
        old.close()


@contextlib.contextmanager
def use_adapter(adapter: Adapter) -> Iterator[Adapter]:
    """Route every enqueue, from any thread, to ``adapter`` inside the block."""
    _overrides.append(adapter)
    try:
        yield adapter
    finally:
        _overrides.remove(adapter)
