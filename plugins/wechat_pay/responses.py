"""What wechat_pay's JSON route answers (docs/api.md, "WeChat"): the response model for
the OpenAPI document. The notify routes answer XML and the OAuth routes redirect; their
``@api`` marks say so instead."""

from __future__ import annotations

from pydantic import BaseModel


class JsSdkConfig(BaseModel):
    """The fields of ``wx.config`` besides ``jsApiList`` (the page picks those)."""

    appId: str
    timestamp: int
    nonceStr: str
    signature: str
