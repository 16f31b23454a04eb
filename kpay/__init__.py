"""kpay: a plugin-based realtime server for paid knowledge work in the WeChat ecosystem."""

from kpay.core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
