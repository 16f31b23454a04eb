"""Fixtures of the crash tests (real server processes): ``deployments``, ``wechat``."""

from crash_servers import certificates, deployments, wechat

__all__ = ["certificates", "deployments", "wechat"]
