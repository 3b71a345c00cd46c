"""ioc — the monitoring service of a provincial Intelligent Operations Centre."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ioc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
