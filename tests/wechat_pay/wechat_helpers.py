"""Helpers for the wechat_pay tests."""

from __future__ import annotations

from typing import Any

import tornado.httpclient

from plugins.wechat_pay import signing

NOTIFY = "/api/v1/pay/wechat/notify"
REFUND_NOTIFY = "/api/v1/pay/wechat/refund-notify"


async def create_order(api, token: str, channel: str = "native", amount: int = 500,
                       **extra: Any) -> dict[str, Any]:
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": amount}, "channel": channel, **extra}, token)
    assert status == 201, body
    return body


async def post_xml(api, path: str, body: str | bytes,
                   client: Any = None) -> tuple[int, dict[str, str]]:
    """POST an XML body; returns (status, parsed XML answer)."""
    client = client or tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(api.base + path, method="POST", body=body,
                                  headers={"Content-Type": "text/xml"}, raise_error=False)
    return response.code, signing.parse_xml(response.body or b"")


async def notifies(kpay_app, **query: Any) -> list[dict[str, Any]]:
    return [n async for n in kpay_app.store["wechat_notifies"].find(query)]


async def ledger_count(kpay_app, order_id: str) -> int:
    return await kpay_app.store["ledger"].count_documents({"meta.order_id": order_id})
