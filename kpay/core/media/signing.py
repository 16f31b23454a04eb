"""Signed URLs of paid media: short-lived, bound to a user and a resource.

A token is ``<media id>.<expiry>.<user>.<resource>.<action>.<signature>``: user,
resource and action base64url-encoded, the expiry in whole seconds of the app clock,
the signature an HMAC-SHA256 (truncated to 128 bits) of the rest under a key derived
from the app's secret. It names no secret and proves only what kpay signed; serving it
still asks ``app.access`` (kpay/core/media/serving.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from kpay.core.errors import Forbidden

MAX_TOKEN = 600


@dataclass(frozen=True)
class SignedMedia:
    media_id: str
    expires: int
    user_id: str
    resource: str
    #: What ``app.access`` is asked the user may do to the resource ("view", "enter").
    action: str = "view"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UrlSigner:
    def __init__(self, secret: str) -> None:
        # A key of its own: a media signature can never pass for anything else kpay signs.
        self.key = hmac.new(secret.encode(), b"kpay media url v1", hashlib.sha256).digest()

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest()[:16])

    def sign(self, grant: SignedMedia) -> str:
        payload = ".".join((grant.media_id, str(grant.expires), _b64(grant.user_id.encode()),
                            _b64(grant.resource.encode()), _b64(grant.action.encode())))
        return f"{payload}.{self._signature(payload)}"

    def verify(self, token: str) -> SignedMedia:
        """The grant a token carries if kpay signed it; 403 ``invalid_signature`` if not.
        The expiry is the caller's to check (against the app clock)."""
        parts = token.split(".") if 0 < len(token) <= MAX_TOKEN else []
        if len(parts) != 6:
            raise Forbidden("not a media URL kpay signed", code="invalid_signature")
        payload, signature = ".".join(parts[:5]), parts[5]
        if not hmac.compare_digest(signature, self._signature(payload)):
            raise Forbidden("not a media URL kpay signed", code="invalid_signature")
        media_id, expires, user, resource, action = parts[:5]
        try:
            return SignedMedia(media_id, int(expires), _unb64(user).decode(),
                               _unb64(resource).decode(), _unb64(action).decode())
        except ValueError:  # a signed token always decodes; this is belt and braces
            raise Forbidden("not a media URL kpay signed", code="invalid_signature") from None
