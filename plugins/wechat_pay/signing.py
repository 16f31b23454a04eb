"""WeChat Pay v2 wire format: signatures, safe XML, encrypted refund notifies.

One place for these rules, used by the notify handlers, the provider (to check the
signature of WeChat's answers) and the fake server (to check ours exactly as WeChat
does). Signing: the non-empty parameters except ``sign``, sorted by name, joined as
``k=v&k=v`` then ``&key=<api_key>``; MD5 or HMAC-SHA256 (keyed with the api_key) of
that, upper-case hex.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from xml.etree.ElementTree import Element

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MD5 = "MD5"
HMAC_SHA256 = "HMAC-SHA256"
SIGN_TYPES = (MD5, HMAC_SHA256)

# A notify or an API answer is a few hundred bytes; anything far larger is not WeChat.
MAX_XML_BYTES = 64 * 1024

SUCCESS_XML = ("<xml><return_code><![CDATA[SUCCESS]]></return_code>"
               "<return_msg><![CDATA[OK]]></return_msg></xml>")


class XmlError(ValueError):
    """The body is not the flat ``<xml>`` document WeChat sends (or is unsafe)."""


def signing_string(params: dict[str, Any], api_key: str) -> bytes:
    pairs = [f"{k}={params[k]}" for k in sorted(params)
             if k != "sign" and params[k] not in (None, "")]
    pairs.append(f"key={api_key}")
    return "&".join(pairs).encode("utf-8")


def sign(params: dict[str, Any], api_key: str, sign_type: str = MD5) -> str:
    """The ``sign`` value WeChat expects for ``params`` (the ``sign`` key is ignored)."""
    message = signing_string(params, api_key)
    if sign_type == HMAC_SHA256:
        return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    if sign_type == MD5:
        return hashlib.md5(message).hexdigest().upper()
    raise ValueError(f"unknown sign_type {sign_type!r}")


def verify(params: dict[str, Any], api_key: str, undeclared: tuple[str, ...] = (MD5,)) -> bool:
    """Is ``params["sign"]`` right for the rest? Compared in constant time.

    The type is the ``sign_type`` field when present; WeChat's API answers carry none
    (they are signed as the request was), so ``undeclared`` lists the types to try then.
    """
    given = params.get("sign")
    declared = params.get("sign_type")
    if not isinstance(given, str) or not given:
        return False
    if declared is not None and declared not in SIGN_TYPES:
        return False
    matched = False
    for sign_type in (declared,) if declared else undeclared:
        expected = sign(params, api_key, sign_type)
        matched |= hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    return matched


def parse_xml(body: bytes | str, root_tag: str = "xml") -> dict[str, str]:
    """Parse WeChat's flat ``<xml><k>v</k>...</xml>`` (refund ``req_info``: ``<root>``).

    DTDs, entities and external references are refused (defusedxml), which also stops
    the billion-laughs and external-entity attacks; nested elements are refused too.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if not raw or len(raw) > MAX_XML_BYTES:
        raise XmlError("empty or oversized XML body")
    try:
        root: Element = fromstring(raw, forbid_dtd=True, forbid_entities=True,
                                   forbid_external=True)
    except DefusedXmlException as e:
        raise XmlError(f"unsafe XML refused: {type(e).__name__}") from None
    except Exception as e:  # ParseError and friends: any non-XML body
        raise XmlError(f"not XML: {e}") from None
    if root.tag != root_tag:
        raise XmlError(f"root element is <{root.tag}>, not <{root_tag}>")
    out: dict[str, str] = {}
    for child in root:
        if len(child):
            raise XmlError(f"element <{child.tag}> is nested")
        if child.tag in out:
            raise XmlError(f"element <{child.tag}> appears twice")
        out[child.tag] = (child.text or "").strip()
    return out


def to_xml(params: dict[str, Any]) -> str:
    """A flat ``<xml>`` document; values in CDATA (``]]>`` split so it stays intact)."""
    parts = ["<xml>"]
    for key in sorted(params):
        value = params[key]
        if value is None:
            continue
        text = str(value).replace("]]>", "]]]]><![CDATA[>")
        parts.append(f"<{key}><![CDATA[{text}]]></{key}>")
    parts.append("</xml>")
    return "".join(parts)


def signed_xml(params: dict[str, Any], api_key: str, sign_type: str = MD5,
               declare: bool = True) -> str:
    """Sign and serialise; ``declare`` adds the ``sign_type`` field (not for MD5)."""
    params = {k: v for k, v in params.items() if v not in (None, "")}
    if sign_type != MD5 and declare:
        params["sign_type"] = sign_type
    params["sign"] = sign(params, api_key, sign_type)
    return to_xml(params)


def fail_xml(message: str) -> str:
    return to_xml({"return_code": "FAIL", "return_msg": message[:120]})


# -- refund notify: req_info is AES-256-ECB(PKCS#7) with key md5(api_key) hex, base64 --


def _refund_cipher(api_key: str) -> Cipher:
    key = hashlib.md5(api_key.encode("utf-8")).hexdigest().lower().encode("ascii")
    return Cipher(algorithms.AES(key), modes.ECB())


def decrypt_req_info(req_info: str, api_key: str) -> dict[str, str]:
    """Decrypt a refund notify's ``req_info`` into its (flat XML) fields."""
    try:
        data = base64.b64decode(req_info, validate=True)
        decryptor = _refund_cipher(api_key).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError as e:
        raise XmlError(f"req_info does not decrypt: {e}") from None
    return parse_xml(plain, root_tag="root")


def encrypt_req_info(fields: dict[str, Any], api_key: str) -> str:
    """The inverse of :func:`decrypt_req_info` (the fake server sends these)."""
    inner = to_xml(fields)
    plain = ("<root>" + inner[len("<xml>"):-len("</xml>")] + "</root>").encode("utf-8")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = _refund_cipher(api_key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")
