"""WeChat Pay API v3's wire format: request signatures, answer and callback signatures,
and the AES-256-GCM ``resource`` of callbacks (docs/wechat_pay.md, "API v3").

- A request is signed with the merchant's API private key, RSA-SHA256 (PKCS#1 v1.5)
  over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``, and sent as
  ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",
  signature="..",timestamp="..",serial_no=".."``.
- WeChat signs its answers and callbacks over ``TIMESTAMP\\nNONCE\\nBODY\\n`` (the raw
  body, as received) with the key named by ``Wechatpay-Serial``: a 微信支付公钥
  (``PUB_KEY_ID_...``) or a 平台证书 (its serial number, hex).
- A callback's ``resource`` is AES-256-GCM encrypted with the APIv3 key, its
  ``nonce`` and ``associated_data``.
- 敏感信息加密: a personal field sent to WeChat (商家转账's ``user_name``) is
  RSA-OAEP (SHA-1, MGF1-SHA-1) encrypted with WeChat's public key, base64, and the
  request names that key in ``Wechatpay-Serial``.

Pure functions and small key holders; no I/O.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# WeChat's answer and callback headers.
SERIAL, SIGNATURE = "Wechatpay-Serial", "Wechatpay-Signature"
TIMESTAMP, NONCE = "Wechatpay-Timestamp", "Wechatpay-Nonce"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"


class V3SignatureError(Exception):
    """A signature, key or encrypted resource that cannot be believed. ``reason`` is
    the snake_case word a refused notify is recorded with."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def nonce() -> str:
    return secrets.token_hex(16)


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Base64 RSA-SHA256 (PKCS#1 v1.5) signature: about a millisecond of CPU for a
    2048-bit key, so callers on the event loop run it in an executor."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def request_message(method: str, path: str, timestamp: str, nonce_str: str,
                    body: bytes) -> bytes:
    """What a request signature covers; ``path`` is the URL's path and query."""
    return b"%s\n%s\n%s\n%s\n%s\n" % (method.upper().encode(), path.encode(),
                                      timestamp.encode(), nonce_str.encode(), body)


def answer_message(timestamp: str, nonce_str: str, body: bytes) -> bytes:
    """What an answer or callback signature covers: the raw body exactly as received."""
    return b"%s\n%s\n%s\n" % (timestamp.encode(), nonce_str.encode(), body)


def authorization(mchid: str, serial_no: str, nonce_str: str, timestamp: str,
                  signature: str) -> str:
    return (f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_authorization(header: str) -> dict[str, str]:
    """The fields of an ``Authorization`` header (for the fake); {} if not v3's."""
    schema, _, rest = header.partition(" ")
    if schema != SCHEMA:
        return {}
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value.strip('"')
    return fields


def jsapi_message(appid: str, timestamp: str, nonce_str: str, package: str) -> bytes:
    """What the JSAPI ``paySign`` covers (signType RSA)."""
    return f"{appid}\n{timestamp}\n{nonce_str}\n{package}\n".encode()


def decrypt_resource(api_v3_key: str, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON inside a callback's ``resource`` (AEAD_AES_256_GCM)."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise V3SignatureError("bad_resource", "resource.algorithm is not AEAD_AES_256_GCM")
    try:
        cipher = AESGCM(api_v3_key.encode())
        plain = cipher.decrypt(str(resource["nonce"]).encode(),
                               base64.b64decode(str(resource["ciphertext"]), validate=True),
                               str(resource.get("associated_data") or "").encode())
        data = json.loads(plain)
    except (InvalidTag, KeyError, ValueError) as e:
        raise V3SignatureError("bad_resource",
                               f"resource does not decrypt: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise V3SignatureError("bad_resource", "resource is not a JSON object")
    return data


def encrypt_resource(api_v3_key: str, data: Mapping[str, Any], original_type: str,
                     associated_data: str) -> dict[str, str]:
    """A callback's ``resource`` (what WeChat sends; the fake uses it)."""
    nonce_str = secrets.token_hex(6)  # WeChat's are 12 characters
    ciphertext = AESGCM(api_v3_key.encode()).encrypt(
        nonce_str.encode(), json.dumps(data, ensure_ascii=False).encode(),
        associated_data.encode())
    return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": associated_data, "nonce": nonce_str}


def encrypt_sensitive(key: rsa.RSAPublicKey, text: str) -> str:
    """A personal field as WeChat takes it (敏感信息加密): RSA-OAEP, SHA-1, base64."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return base64.b64encode(key.encrypt(text.encode(), oaep)).decode()


def decrypt_sensitive(key: rsa.RSAPrivateKey, ciphertext: str) -> str:
    """:func:`encrypt_sensitive` undone (WeChat's side: the fake); ValueError if it
    does not decrypt."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return key.decrypt(base64.b64decode(ciphertext, validate=True), oaep).decode()


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def certificate_serial(certificate: x509.Certificate) -> str:
    """A 平台证书's serial as ``Wechatpay-Serial`` names it (upper-case hex)."""
    return format(certificate.serial_number, "X")


def normal_serial(serial: str) -> str:
    """A certificate serial in :func:`certificate_serial`'s form (any case, leading
    zeros), or ``serial`` itself when it is not hex (a public key ID)."""
    try:
        return format(int(serial, 16), "X")
    except ValueError:
        return serial


@dataclass
class PlatformKeys:
    """WeChat's keys a signature may be checked with, by ``Wechatpay-Serial``: the
    微信支付公钥 (public-key mode) and/or the 平台证书 (certificate mode). Both may be
    present while a merchant switches from certificates to the public key."""

    keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)

    def add_public_key(self, key_id: str, pem: bytes) -> None:
        self.keys[key_id] = load_public_key(pem)

    def add_certificates(self, pem: bytes) -> None:
        for certificate in x509.load_pem_x509_certificates(pem):
            key = certificate.public_key()
            if isinstance(key, rsa.RSAPublicKey):
                self.keys[certificate_serial(certificate)] = key

    def encryption_key(self) -> tuple[str, rsa.RSAPublicKey]:
        """(serial, key) to encrypt a personal field with: the 微信支付公钥 when there is
        one (WeChat's choice going forward), else a 平台证书; ValueError if none."""
        for serial, key in self.keys.items():
            if serial.startswith(PUBLIC_KEY_ID_PREFIX):
                return serial, key
        if not self.keys:
            raise ValueError("no WeChat Pay public key or platform certificate")
        return next(iter(self.keys.items()))

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check WeChat's signature of ``body`` (raw); V3SignatureError if not believed.
        The timestamp window is the caller's (callbacks check it, see v3_provider)."""
        serial = headers.get(SERIAL) or ""
        signature = headers.get(SIGNATURE) or ""
        timestamp = headers.get(TIMESTAMP) or ""
        nonce_str = headers.get(NONCE) or ""
        if not (serial and signature and timestamp and nonce_str):
            raise V3SignatureError("missing_signature", "Wechatpay-* signature headers missing")
        key = self.keys.get(serial) or self.keys.get(normal_serial(serial))
        if key is None:
            raise V3SignatureError("unknown_serial", f"no WeChat Pay key {serial[:64]!r}")
        if not rsa_verify(key, answer_message(timestamp, nonce_str, body), signature):
            raise V3SignatureError("bad_signature", "Wechatpay-Signature does not verify")
