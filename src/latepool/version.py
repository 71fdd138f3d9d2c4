"""latepool's version, as installed (its own module: the index writer records it without importing the package)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latepool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
