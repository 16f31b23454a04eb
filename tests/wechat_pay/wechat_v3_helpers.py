"""Helpers for the WeChat Pay API v3 tests."""

from __future__ import annotations

import json
from typing import Any

import tornado.httpclient

V3_NOTIFY = "/api/v1/pay/wechat-v3/notify"
V3_REFUND_NOTIFY = "/api/v1/pay/wechat-v3/refund-notify"


async def post_callback(api, path: str, body: bytes, headers: dict[str, str],
                        client: Any = None) -> tuple[int, dict[str, Any]]:
    """POST a v3 callback as WeChat does; returns (status, JSON answer)."""
    client = client or tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(api.base + path, method="POST", body=body,
                                  headers=headers, raise_error=False)
    return response.code, json.loads(response.body or b"{}")


async def paid_v3_order(api, fake, channel: str = "native", amount: int = 500,
                        user: str = "rita") -> tuple[str, dict[str, Any]]:
    """An order paid through the fake's callback (with retries); (token, order)."""
    from wechat_helpers import create_order

    token = await api.login(user)
    extra = {"openid": f"o-{user}"} if channel == "jsapi" else {}
    order = (await create_order(api, token, channel, amount, **extra))["order"]
    delivery = fake.pay(order["out_trade_no"])
    await delivery.done.wait()
    assert delivery.succeeded, delivery.attempts
    return token, order
