"""JWT tokens (PyJWT, HS256) and the current user.

A token carries ``sub`` (user id), ``role``, ``iat``, ``exp`` and ``aud``. Verification
fixes the algorithm list, requires ``exp`` and checks the audience, so ``alg: none``,
another algorithm, an expired or a tampered token are all refused.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from kpay.core.clock import Clock
from kpay.core.config import AuthSettings
from kpay.core.errors import ConfigError, Unauthorized

ALGORITHM = "HS256"
ROLES = ("student", "consultant", "admin")
#: How far ahead of this node's clock another node may have issued a token.
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class User:
    id: str
    role: str

    def has_role(self, *roles: str) -> bool:
        return self.role in roles or self.role == "admin"


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: the user, the ``token_version`` it was issued under,
    its id (``jti``; None in tokens from before logouts existed) and its expiry."""

    user: User
    version: int
    token_id: str | None
    expires_at: int


class TokenService:
    def __init__(self, settings: AuthSettings, secret: str, clock: Clock) -> None:
        if len(secret) < 32:
            raise ConfigError("[auth] secret must be at least 32 characters")
        self.secret = secret
        self.audience = settings.audience
        self.ttl = settings.token_ttl_seconds
        self.clock = clock

    def issue(self, user_id: str, role: str, ttl: int | None = None, version: int = 0) -> str:
        """A token for ``user_id``; ``version`` is the user's stored ``token_version``
        (kpay/core/users.py): bumping it ends every token issued before."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        now = int(self.clock.time())
        claims = {"sub": user_id, "role": role, "iat": now, "exp": now + (ttl or self.ttl),
                  "aud": self.audience, "ver": version, "jti": secrets.token_hex(12)}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> User:
        """The user and role *as the token says* (signature, audience and times checked).
        Not for deciding what someone may do: the stored role, a block and a logout are
        judged by :func:`kpay.core.users.authenticate`, which handlers and sockets use."""
        return self.decode(token).user

    def decode(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], audience=self.audience,
                options={"require": ["exp", "iat", "sub", "aud"],
                         # Time is judged below on the app's clock alone, never the wall
                         # clock: the dev clock may run ahead, tests pin it in the past.
                         "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError as e:
            raise Unauthorized(f"invalid token: {e}", code="invalid_token") from None
        self._check_times(claims)
        role, sub = claims.get("role"), claims.get("sub")
        if role not in ROLES or not isinstance(sub, str) or not sub:
            raise Unauthorized("invalid token: bad subject or role", code="invalid_token")
        version, jti = claims.get("ver", 0), claims.get("jti")
        if (not isinstance(version, int) or isinstance(version, bool)
                or not (jti is None or (isinstance(jti, str) and 0 < len(jti) <= 64))):
            raise Unauthorized("invalid token: bad ver or jti", code="invalid_token")
        return TokenClaims(User(sub, role), version, jti, claims["exp"])

    def _check_times(self, claims: dict[str, Any]) -> None:
        """``exp`` passed, or ``iat``/``nbf`` still ahead (beyond a little skew between
        nodes), as the app's clock tells."""
        now = self.clock.time()
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", claims["iat"])
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in (exp, iat, nbf)):
            raise Unauthorized("invalid token: exp, iat and nbf must be whole seconds",
                               code="invalid_token")
        if exp <= now:
            raise Unauthorized("token expired", code="token_expired")
        if max(iat, nbf) > now + CLOCK_SKEW_SECONDS:
            raise Unauthorized("invalid token: issued in the future", code="invalid_token")


def resolve_secret(settings: AuthSettings, dev_enabled: bool, var_dir: str = "var") -> str:
    """The configured secret; in dev mode a generated one kept in var/jwt_secret.

    Outside dev mode a weak secret (see :func:`check_secret`) stops start-up."""
    if settings.secret:
        if not dev_enabled:
            check_secret("[auth] secret", settings.secret, var_dir)
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


# -- weak secrets (refused outside dev mode) ------------------------------------------------

#: Placeholder values of config/production.example.toml (and the docs): known to anyone
#: who has read them, so never a secret. tests/core/test_weak_secrets.py keeps the list in
#: step with the example file.
PLACEHOLDER_SECRETS = frozenset({
    "0123456789abcdef0123456789abcdef",  # [wechat_pay] api_key
})
#: A secret with fewer different characters than this is refused ("a" * 32, "abab...").
MIN_DISTINCT_CHARACTERS = 8
#: ... and so is one with a character this many times in a row (padding: "name-xxxxxxxx").
MAX_RUN = 8
#: ... and one that is a piece of at most this many characters repeated ("secret" * 6).
MAX_REPEATED_PIECE = 16


def weak_secret_reason(value: str, var_dir: str = "var") -> str | None:
    """Why ``value`` must not be used as a secret outside dev mode, or None.

    Refused: a placeholder of the example config; the secret dev mode generated into
    ``<var_dir>/jwt_secret``; fewer than 8 different characters; the same character 8
    times in a row; a piece of up to 16 characters repeated. (A random 32-character hex
    key, the shortest allowed, trips the first rule about 3 times in a million.)
    """
    if value in PLACEHOLDER_SECRETS:
        return "is the placeholder of config/production.example.toml"
    dev_secret = Path(var_dir) / "jwt_secret"
    try:
        if dev_secret.is_file() and value == dev_secret.read_text().strip():
            return f"is the development secret generated into {dev_secret}"
    except OSError:
        pass
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_DISTINCT_CHARACTERS} different characters"
    if re.search(r"(.)\1{" + str(MAX_RUN - 1) + "}", value, re.DOTALL):
        return f"repeats one character {MAX_RUN} or more times in a row"
    for size in range(1, min(MAX_REPEATED_PIECE, len(value) // 2) + 1):
        if value == (value[:size] * (len(value) // size + 1))[:len(value)]:
            return f"is a piece of {size} characters repeated"
    return None


def check_secret(key: str, value: str, var_dir: str = "var") -> None:
    """ConfigError naming ``key`` (e.g. ``[auth] secret``) when ``value`` is weak."""
    reason = weak_secret_reason(value, var_dir)
    if reason is not None:
        raise ConfigError(
            f"{key} {reason}: outside dev mode it must be a randomly generated value "
            "(see docs/configuration.md, Secrets)")
