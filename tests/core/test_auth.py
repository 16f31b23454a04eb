"""JWT tokens: what is accepted, everything that must be refused, and the dev secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

import jwt
import pytest

from kpay.core.auth import TokenService, User, resolve_secret
from kpay.core.clock import Clock
from kpay.core.config import AuthSettings
from kpay.core.errors import ConfigError, Unauthorized

SECRET = "a-test-secret-that-is-long-enough-0123456789"
#: The tokens' clock starts here, months before the wall clock: every judgement of
#: time must follow it (a wall-clock check would call these tokens long expired).
PINNED = datetime(2026, 3, 1, 18, 50, tzinfo=UTC)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(AuthSettings(secret=SECRET, audience="kpay"), SECRET,
                        Clock.starting_at(PINNED))


def claims(now: int = int(PINNED.timestamp()), **changes) -> dict:
    base = {"sub": "alice", "role": "student", "iat": now, "exp": now + 600, "aud": "kpay"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refused(tokens: TokenService, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        tokens.verify(token)
    assert caught.value.status == 401
    return caught.value


def test_issued_token_round_trips(tokens):
    token = tokens.issue("alice", "consultant")
    assert tokens.verify(token) == User("alice", "consultant")
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience="kpay",
                         options={"verify_exp": False})
    assert set(decoded) == {"sub", "role", "iat", "exp", "aud", "ver", "jti"}
    assert decoded["exp"] - decoded["iat"] == AuthSettings().token_ttl_seconds
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_refuses_unknown_role(tokens):
    with pytest.raises(ValueError, match="unknown role 'root'"):
        tokens.issue("alice", "root")


def test_expired(tokens):
    error = refused(tokens, jwt.encode(claims(exp=int(PINNED.timestamp()) - 5), SECRET, "HS256"))
    assert error.code == "token_expired"


def test_time_is_judged_on_the_app_clock_alone(tokens):
    # Valid on the pinned clock, though long expired by the wall clock.
    assert tokens.verify(jwt.encode(claims(), SECRET, "HS256")) == User("alice", "student")
    # A clock far ahead of the wall clock accepts what it issued.
    ahead = TokenService(AuthSettings(secret=SECRET), SECRET,
                         Clock.starting_at(datetime(2099, 1, 1, tzinfo=UTC)))
    assert ahead.verify(ahead.issue("bob", "admin")) == User("bob", "admin")
    assert refused(tokens, ahead.issue("bob", "admin")).code == "invalid_token"  # future iat


@pytest.mark.parametrize("field,value", [("iat", "soon"), ("exp", 1.5e12), ("exp", True),
                                         ("nbf", "x")])
def test_times_must_be_whole_seconds(tokens, field, value):
    token = jwt.encode({**claims(), field: value}, SECRET, "HS256")
    assert refused(tokens, token).code == "invalid_token"


def test_not_before_is_judged_on_the_app_clock(tokens):
    later = int(PINNED.timestamp()) + 3600
    token = jwt.encode(claims(nbf=later, exp=later + 600), SECRET, "HS256")
    assert refused(tokens, token).code == "invalid_token"
    tokens.clock.advance(3600)
    assert tokens.verify(token).id == "alice"


def test_expired_by_the_dev_clock(tokens):
    token = tokens.issue("alice", "student", ttl=60)
    tokens.clock.advance(61)
    assert refused(tokens, token).code == "token_expired"


def test_wrong_audience(tokens):
    token = jwt.encode(claims(aud="someone-else"), SECRET, "HS256")
    assert refused(tokens, token).code == "invalid_token"


def test_missing_audience(tokens):
    assert refused(tokens, jwt.encode(claims(aud=None), SECRET, "HS256")).code == "invalid_token"


def test_missing_exp(tokens):
    token = jwt.encode(claims(exp=None), SECRET, "HS256")
    error = refused(tokens, token)
    assert error.code == "invalid_token" and "exp" in error.message


def test_alg_none(tokens):
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert refused(tokens, token).code == "invalid_token"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm(tokens):
    # Signed with the right secret, but HS512 is not in the fixed algorithm list.
    token = jwt.encode(claims(), SECRET, "HS512")
    assert refused(tokens, token).code == "invalid_token"


def test_rs256_header_signed_with_the_secret(tokens):
    # The classic confusion attack: claim RS256 and sign with the shared secret.
    header = b64({"alg": "RS256", "typ": "JWT"})
    body = b64(claims(role="admin"))
    signature = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert refused(tokens, f"{header}.{body}.{b64(signature)}").code == "invalid_token"


def test_tampered_payload(tokens):
    header, _, signature = tokens.issue("alice", "student").split(".")
    forged = f"{header}.{b64(claims(role='admin'))}.{signature}"
    assert refused(tokens, forged).code == "invalid_token"


def test_tampered_signature(tokens):
    header, body, signature = tokens.issue("alice", "student").split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert refused(tokens, f"{header}.{body}.{flipped}").code == "invalid_token"


def test_signed_with_another_secret(tokens):
    token = jwt.encode(claims(), "another-secret-another-secret-another-secret", "HS256")
    assert refused(tokens, token).code == "invalid_token"


@pytest.mark.parametrize("role", ["root", "", None, 3])
def test_unknown_role(tokens, role):
    token = jwt.encode(claims(role=role), SECRET, "HS256")
    assert refused(tokens, token).code == "invalid_token"


@pytest.mark.parametrize("sub", ["", 42])
def test_bad_subject(tokens, sub):
    token = jwt.encode(claims(sub=sub), SECRET, "HS256")
    assert refused(tokens, token).code == "invalid_token"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b"])
def test_garbage(tokens, garbage):
    assert refused(tokens, garbage).code == "invalid_token"


def test_admin_has_every_role():
    assert User("root", "admin").has_role("consultant")
    assert not User("alice", "student").has_role("consultant", "admin")


# -- the secret ---------------------------------------------------------------------------


def test_dev_secret_is_generated_once_into_var(tmp_path):
    var = tmp_path / "var"
    first = resolve_secret(AuthSettings(), dev_enabled=True, var_dir=str(var))
    path = var / "jwt_secret"
    assert path.read_text() == first and len(first) >= 32
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert resolve_secret(AuthSettings(), dev_enabled=True, var_dir=str(var)) == first


def test_configured_secret_wins(tmp_path):
    assert resolve_secret(AuthSettings(secret=SECRET), True, str(tmp_path)) == SECRET
    assert not (tmp_path / "jwt_secret").exists()


def test_secret_required_without_dev_mode(tmp_path):
    with pytest.raises(ConfigError, match=r"\[auth\] secret is required"):
        resolve_secret(AuthSettings(), dev_enabled=False, var_dir=str(tmp_path))


def test_short_secret_refused():
    with pytest.raises(ConfigError, match="at least 32"):
        TokenService(AuthSettings(), "short", Clock())


# -- over HTTP ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_http_refusals_use_the_envelope(api, kpay_app):
    await kpay_app.users.ensure("alice", "student")
    good = kpay_app.tokens.issue("alice", "student")
    now = int(kpay_app.clock.time())
    expired = jwt.encode(claims(now, exp=now - 5), kpay_app.tokens.secret, "HS256")
    cases = {
        "no token": ({}, "unauthorized"),
        "not bearer": ({"Authorization": f"Basic {good}"}, "invalid_token"),
        "empty bearer": ({"Authorization": "Bearer "}, "invalid_token"),
        "expired": ({"Authorization": f"Bearer {expired}"}, "token_expired"),
        "alg none": ({"Authorization": f"Bearer {b64({'alg': 'none'})}.{b64(claims(now))}."},
                     "invalid_token"),
        "tampered": ({"Authorization": f"Bearer {good[:-3]}xyz"}, "invalid_token"),
    }
    for name, (headers, code) in cases.items():
        status, body = await api.request("GET", "/api/v1/me", headers=headers)
        assert status == 401, name
        assert body["error"]["code"] == code, (name, body)
        assert body["error"]["message"], name
    status, body = await api.get("/api/v1/me", good)
    assert status == 200 and body["id"] == "alice"
