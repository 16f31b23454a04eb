"""A local fake of WeChat Pay API v3, for tests and ``make run`` demos (api_version v3
in dev mode without v3 keys).

It has its own keys: the merchant's API key pair (it checks every request's
``Authorization`` signature with the public half and refuses a bad one with 401
``SIGN_ERROR``, as WeChat does), a 微信支付公钥 (``PUB_KEY_ID_...``) and a 平台证书; it
signs answers and callbacks with the one ``mode`` names (``public_key`` or
``certificate``). It serves JSAPI/H5/Native orders, query, close and refunds, and sends
payment and refund callbacks with WeChat's retries until answered 2xx, and 商家转账
(``fake.transfers``, v3_fake_transfers.py).
``POST /_fake/v3/pay?out_trade_no=`` "pays" an order from a demo page or curl.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.httpserver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from plugins.wechat_pay import v3_signing
from plugins.wechat_pay.fake import RETRY_INTERVALS, Delivery, serve_locally
from plugins.wechat_pay.fake_cashier import cashier_routes
from plugins.wechat_pay.v3_client import V3Merchant
from plugins.wechat_pay.v3_fake_bills import FakeBills
from plugins.wechat_pay.v3_fake_transfers import TRANSFER_ROUTES, FakeTransfers
from plugins.wechat_pay.v3_signing import PlatformKeys

CHINA = timezone(timedelta(hours=8))
MODES = ("public_key", "certificate")


@functools.cache
def fake_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """(merchant, 微信支付公钥, 平台证书) keys, made once per process: RSA key generation
    is slow and the fakes need no secrecy from each other."""
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                 for _ in range(3))  # type: ignore[return-value]


def self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (fake)")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256()))


def pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(CHINA)).isoformat(timespec="seconds")


@dataclass
class FakeV3Order:
    out_trade_no: str
    total: int
    trade_type: str
    notify_url: str
    openid: str = ""
    prepay_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(14))
    trade_state: str = "NOTPAY"
    transaction_id: str = ""
    refunded: int = 0
    paid_at: datetime | None = None  # when the payer paid (``fake.now``): for its bills
    description: str = ""  # shown by the H5 cashier


class FakeWeChatV3:
    def __init__(self, *, appid: str | None = None, mchid: str | None = None,
                 api_v3_key: str | None = None, retry_scale: float = 1.0,
                 mode: str = "public_key",
                 merchant_key: rsa.RSAPrivateKey | None = None) -> None:
        """``merchant_key``: the merchant's API key pair (default: the fake's own)."""
        self.appid = appid or "wxfake0000000001"
        self.mchid = mchid or "1900000109"
        self.api_v3_key = api_v3_key or secrets.token_hex(16)  # 32 characters
        self.retry_scale = retry_scale
        self.mode = mode
        own_merchant_key, self.wechatpay_key, cert_key = fake_keys()
        self.merchant_key = merchant_key or own_merchant_key
        self.cert_key = cert_key
        self.certificate = self_signed(cert_key)
        self.merchant_serial = secrets.token_hex(20).upper()
        self.public_key_id = "PUB_KEY_ID_0119" + "".join(secrets.choice("0123456789")
                                                         for _ in range(21))
        self.orders: dict[str, FakeV3Order] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.deliveries: list[Delivery] = []
        # Faults to inject: refunds processed but answered with HTTP 500.
        self.lose_refund_answers = 0
        # What time it is at WeChat (tests give it the app's clock) and the trade bills
        # served from what happened (v3_fake_bills).
        self.now: Callable[[], datetime] = lambda: datetime.now(CHINA)
        self.bills = FakeBills()
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()
        # 商家转账 (v3_fake_transfers.py); its clock defaults to real time.
        self.transfers = FakeTransfers(self, lambda: datetime.now(CHINA))

    # -- running ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def merchant(self) -> V3Merchant:
        """The merchant's side, with both of WeChat's keys (dev mode: no files)."""
        return V3Merchant(self.appid, self.mchid, self.merchant_serial, self.merchant_key,
                          self.api_v3_key, self.platform_keys("both"), self.base_url, True)

    def platform_keys(self, trust: str) -> PlatformKeys:
        keys = PlatformKeys()
        if trust in ("both", "public_key"):
            keys.add_public_key(self.public_key_id, pem_public(self.wechatpay_key.public_key()))
        if trust in ("both", "certificate"):
            keys.add_certificates(self.certificate.public_bytes(serialization.Encoding.PEM))
        return keys

    def settings(self, directory: str | Path, trust: str = "public_key") -> dict[str, Any]:
        """A ``[wechat_pay]`` override for api_version v3 against this fake, its key
        files written to ``directory``; ``trust``: which of WeChat's keys kpay is given
        (``public_key``, ``certificate`` or ``both``, as during a switch)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "apiclient_key.pem").write_bytes(pem_private(self.merchant_key))
        overrides: dict[str, Any] = {
            "api_version": "v3", "appid": self.appid, "mch_id": self.mchid,
            "mch_serial_no": self.merchant_serial, "mch_key": str(folder / "apiclient_key.pem"),
            "api_v3_key": self.api_v3_key, "v3_api_base_url": self.base_url}
        if trust in ("both", "public_key"):
            (folder / "pub_key.pem").write_bytes(pem_public(self.wechatpay_key.public_key()))
            overrides.update(wechatpay_public_key_id=self.public_key_id,
                             wechatpay_public_key=str(folder / "pub_key.pem"))
        if trust in ("both", "certificate"):
            (folder / "platform_certs.pem").write_bytes(
                self.certificate.public_bytes(serialization.Encoding.PEM))
            overrides["platform_certs"] = str(folder / "platform_certs.pem")
        return overrides

    async def start(self, port: int = 0) -> int:
        self.server, self.port = serve_locally(routes(self), port)
        return self.port

    async def stop(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.stop()

    # -- signing as WeChat --------------------------------------------------------------

    def signed_headers(self, body: bytes, *, mode: str | None = None,
                       timestamp: int | str | None = None,
                       key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        """The ``Wechatpay-*`` headers of an answer or callback; ``key`` signs instead
        of WeChat's (a forgery), ``timestamp`` replaces now (a stale one)."""
        mode = mode or self.mode
        serial, own = ((self.public_key_id, self.wechatpay_key) if mode == "public_key"
                       else (v3_signing.certificate_serial(self.certificate), self.cert_key))
        stamp, nonce_str = str(timestamp or int(time.time())), v3_signing.nonce()
        signature = v3_signing.rsa_sign(key or own,
                                        v3_signing.answer_message(stamp, nonce_str, body))
        return {v3_signing.SERIAL: serial, v3_signing.SIGNATURE: signature,
                v3_signing.TIMESTAMP: stamp, v3_signing.NONCE: nonce_str,
                "Content-Type": "application/json"}

    def callback(self, event_type: str, original_type: str, data: dict[str, Any], *,
                 notification_id: str | None = None) -> bytes:
        """A callback body with ``data`` encrypted as WeChat does."""
        envelope = {"id": notification_id or secrets.token_hex(18),
                    "create_time": rfc3339(), "resource_type": "encrypt-resource",
                    "event_type": event_type, "summary": "支付成功",
                    "resource": v3_signing.encrypt_resource(self.api_v3_key, data,
                                                            original_type, original_type)}
        return json.dumps(envelope, ensure_ascii=False).encode()

    def transaction(self, order: FakeV3Order) -> dict[str, Any]:
        """What WeChat reports of an order (query answer, payment callback)."""
        data: dict[str, Any] = {
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": order.out_trade_no,
            "trade_type": order.trade_type, "trade_state": order.trade_state,
            "trade_state_desc": order.trade_state, "payer": {"openid": order.openid or "o-x"},
            "amount": {"total": order.total, "payer_total": order.total, "currency": "CNY",
                       "payer_currency": "CNY"}}
        if order.transaction_id:
            data.update(transaction_id=order.transaction_id, bank_type="OTHERS",
                        success_time=rfc3339())
        return data

    def payment_notify(self, out_trade_no: str, /, *, notification_id: str | None = None,
                       **changes: Any) -> bytes:
        """The callback body for a paid order; ``changes`` replace fields of the
        transaction before it is encrypted (tests build bad ones)."""
        data = {**self.transaction(self.orders[out_trade_no]), **changes}
        return self.callback("TRANSACTION.SUCCESS", "transaction", data,
                             notification_id=notification_id)

    def refund_notify(self, out_refund_no: str, status: str = "SUCCESS") -> bytes:
        refund = self.refunds[out_refund_no]
        order = self.orders[refund["out_trade_no"]]
        data = {"mchid": self.mchid, "out_trade_no": order.out_trade_no,
                "transaction_id": order.transaction_id, "out_refund_no": out_refund_no,
                "refund_id": refund["refund_id"], "refund_status": status,
                "success_time": rfc3339(), "user_received_account": "支付用户零钱",
                "amount": {"total": order.total, "refund": refund["amount"],
                           "payer_total": order.total, "payer_refund": refund["amount"]}}
        return self.callback("REFUND." + status, "refund", data)

    # -- what a payer and WeChat do -----------------------------------------------------

    def pay(self, out_trade_no: str) -> Delivery:
        """The payer pays: the order becomes SUCCESS and its callback is sent (retried)."""
        order = self.orders[out_trade_no]
        if order.trade_state == "NOTPAY":
            order.trade_state = "SUCCESS"
            order.paid_at = self.now()
            order.transaction_id = "4200" + secrets.token_hex(12)
        return self.send(order.notify_url, self.payment_notify(out_trade_no))

    def send(self, url: str, body: bytes, retry: bool = True) -> Delivery:
        """Post a callback to ``url``, signed now at each attempt; with ``retry``, again
        on WeChat's schedule until answered 2xx."""
        delivery = Delivery(url, body.decode())
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(
            self._deliver(delivery, body, RETRY_INTERVALS if retry else ()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, delivery: Delivery, body: bytes,
                       intervals: tuple[int, ...]) -> None:
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            for wait in (0, *intervals):
                await asyncio.sleep(wait * self.retry_scale)
                response = await client.fetch(delivery.url, method="POST", body=body,
                                              headers=self.signed_headers(body),
                                              raise_error=False, request_timeout=10)
                text = (response.body or b"").decode("utf-8", "replace")
                delivery.attempts.append((response.code, text))
                if 200 <= response.code < 300:
                    delivery.succeeded = True
                    return
        finally:
            delivery.done.set()


def routes(fake: FakeWeChatV3) -> list[Any]:
    from plugins.wechat_pay.v3_fake_bills import ROUTES as BILL_ROUTES
    from plugins.wechat_pay.v3_fake_routes import ROUTES

    return [*((pattern, handler, {"fake": fake})
              for pattern, handler in (*ROUTES, *TRANSFER_ROUTES, *BILL_ROUTES)),
            # Where an h5_url leads: the cashier, back to redirect_url after paying.
            *cashier_routes(r"/_fake/v3/mweb", fake)]
