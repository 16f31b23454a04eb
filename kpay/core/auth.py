"""JWT tokens (PyJWT, HS256) and the current user.

A token carries ``sub`` (user id), ``role``, ``iat``, ``exp`` and ``aud``. Verification
fixes the algorithm list, requires ``exp`` and checks the audience, so ``alg: none``,
another algorithm, an expired or a tampered token are all refused.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt

from kpay.core.clock import Clock
from kpay.core.config import AuthSettings
from kpay.core.errors import ConfigError, Unauthorized

ALGORITHM = "HS256"
ROLES = ("student", "consultant", "admin")


@dataclass(frozen=True)
class User:
    id: str
    role: str

    def has_role(self, *roles: str) -> bool:
        return self.role in roles or self.role == "admin"


class TokenService:
    def __init__(self, settings: AuthSettings, secret: str, clock: Clock) -> None:
        if len(secret) < 32:
            raise ConfigError("[auth] secret must be at least 32 characters")
        self.secret = secret
        self.audience = settings.audience
        self.ttl = settings.token_ttl_seconds
        self.clock = clock

    def issue(self, user_id: str, role: str, ttl: int | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        now = int(self.clock.time())
        claims = {"sub": user_id, "role": role, "iat": now, "exp": now + (ttl or self.ttl),
                  "aud": self.audience}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> User:
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], audience=self.audience,
                options={"require": ["exp", "iat", "sub", "aud"]},
                # The dev clock may run ahead of the wall clock: judge expiry by it.
                leeway=max(0.0, self.clock.offset),
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired", code="token_expired") from None
        except jwt.PyJWTError as e:
            raise Unauthorized(f"invalid token: {e}", code="invalid_token") from None
        if claims["exp"] < self.clock.time():
            raise Unauthorized("token expired", code="token_expired")
        role, sub = claims.get("role"), claims.get("sub")
        if role not in ROLES or not isinstance(sub, str) or not sub:
            raise Unauthorized("invalid token: bad subject or role", code="invalid_token")
        return User(sub, role)


def resolve_secret(settings: AuthSettings, dev_enabled: bool, var_dir: str = "var") -> str:
    """The configured secret; in dev mode a generated one kept in var/jwt_secret."""
    if settings.secret:
        return settings.secret
    if not dev_enabled:
        raise ConfigError("[auth] secret is required when dev mode is off (KPAY_AUTH__SECRET)")
    path = Path(var_dir) / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    os.makedirs(var_dir, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
