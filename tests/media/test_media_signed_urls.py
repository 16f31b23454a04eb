"""Paid media through signed URLs: bound to a user and a resource, checked against
``app.access`` on every request, expiring on the app clock, seekable with ranges,
stopped by a takedown."""

from __future__ import annotations

from typing import Any

import pytest

from kpay import hookimpl
from kpay.core.access import ResourceRule
from kpay.testmedia import wav_bytes
from tests.media.conftest import fetch, upload

#: Who may ``view`` each ``tape:<id>``; tests change it.
VIEWERS: dict[str, set[str]] = {}


class TapePlugin:
    """Owns ``tape:<id>``: a throwaway paid resource."""

    @hookimpl
    def register_collections(self, app):
        return []

    @hookimpl
    def register_resources(self, app):
        def owner(app, ident):
            return "carol" if ident in VIEWERS else None

        def allows(app, user, action, ident):
            if action == "enter":  # a second action: only carol may "enter"
                return user.id == "carol"
            return user.id in VIEWERS.get(ident, set())

        return [ResourceRule("tape", owner, allows, actions=("view", "enter"))]


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("tape", TapePlugin())]


@pytest.fixture
def tape(io_loop, consultant, student) -> dict[str, Any]:
    VIEWERS.clear()
    VIEWERS["t1"] = {"alice", "carol"}
    media = io_loop.run_sync(lambda: upload(consultant, wav_bytes(3.0), kind="audio",
                                            purpose="lesson"))
    return media


def path_of(url: str) -> str:
    return url[url.index("/media/"):]


@pytest.mark.gen_test
async def test_signed_url_serves_the_file_with_ranges(kpay_app, student, tape):
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1"))
    whole = await fetch(student, url)
    assert whole.code == 200
    assert whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert whole.headers["Cache-Control"].startswith("private")
    body = whole.body
    assert len(body) == tape["size"]
    size = len(body)
    for header, expected, content_range in [
        ("bytes=0-99", body[:100], f"bytes 0-99/{size}"),
        (f"bytes={size // 2}-", body[size // 2:], f"bytes {size // 2}-{size - 1}/{size}"),
        ("bytes=1000-1999", body[1000:2000], f"bytes 1000-1999/{size}"),
        ("bytes=-500", body[-500:], f"bytes {size - 500}-{size - 1}/{size}"),
        (f"bytes=100-{size + 50}", body[100:], f"bytes 100-{size - 1}/{size}"),
    ]:
        part = await fetch(student, url, {"Range": header})
        assert part.code == 206, header
        assert part.body == expected, header
        assert part.headers["Content-Range"] == content_range
        assert int(part.headers["Content-Length"]) == len(expected)
    beyond = await fetch(student, url, {"Range": f"bytes={size}-"})
    assert beyond.code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.gen_test
async def test_signed_url_expires_on_the_app_clock(kpay_app, student, tape, clock):
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1",
                                            ttl=60))
    assert (await fetch(student, url)).code == 200
    await clock.advance(61)
    response = await fetch(student, url)
    assert response.code == 403 and b"url_expired" in response.body


@pytest.mark.gen_test
async def test_signed_url_refuses_a_user_without_access(kpay_app, api, tape):
    bob = await api.as_user("bob", "student")
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="bob", resource="tape:t1"))
    response = await fetch(bob, url)
    assert response.code == 403 and b"no_access" in response.body
    # Access taken away (a refund): the URL already handed out stops too.
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1"))
    VIEWERS["t1"].discard("alice")
    response = await fetch(bob, url)
    assert response.code == 403 and b"no_access" in response.body


@pytest.mark.gen_test
async def test_signed_url_of_another_user_is_refused(kpay_app, api, student, tape):
    bob = await api.as_user("bob", "student")
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1"))
    response = await fetch(bob, url, {"Authorization": f"Bearer {bob.token}"})
    assert response.code == 403 and b"wrong_user" in response.body
    assert (await fetch(student, url, {"Authorization": f"Bearer {student.token}"})).code == 200


@pytest.mark.gen_test
async def test_tampered_signature_refused(kpay_app, student, tape):
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1"))
    # Change the expiry: the signature no longer matches.
    parts = url.split(".")
    parts[1] = str(int(parts[1]) + 3600)
    response = await fetch(student, ".".join(parts))
    assert response.code == 403 and b"invalid_signature" in response.body


@pytest.mark.gen_test
async def test_takedown_stops_public_and_signed_urls(kpay_app, admin, consultant, student,
                                                     tape):
    from tests.media.conftest import jpeg_with_exif

    cover = await upload(consultant, jpeg_with_exif(300, 200))
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1"))
    assert (await fetch(student, f"/media/{cover['id']}/card")).code == 200
    for media in (cover, tape):
        status, body = await admin.post(f"/api/v1/admin/media/{media['id']}/takedown",
                                        {"reason": "侵权投诉"})
        assert status == 200 and body["media"]["status"] == "taken_down"
    assert (await fetch(student, f"/media/{cover['id']}/card")).code == 410
    assert (await fetch(student, url)).code == 410
    with pytest.raises(Exception) as refused:
        await kpay_app.media.attach(cover["id"], owner_id="carol")
    assert refused.value.code == "invalid_media"
    status, body = await admin.get("/api/v1/admin/audit?action=media.takedown")
    assert status == 200
    assert {r["target"] for r in body["records"]} == {f"media:{cover['id']}",
                                                      f"media:{tape['id']}"}
    # Only admins take down.
    status, body = await student.post(f"/api/v1/admin/media/{tape['id']}/takedown",
                                      {"reason": "x"})
    assert status == 403


@pytest.mark.gen_test
async def test_attach_and_describe(kpay_app, consultant, tape):
    from tests.media.conftest import jpeg_with_exif

    cover = await upload(consultant, jpeg_with_exif(300, 200))
    attached = await kpay_app.media.attach(cover["id"], owner_id="carol", purposes=("cover",))
    assert attached["url"].endswith("/card")
    for wrong in [dict(owner_id="alice"), dict(owner_id="carol", kinds=("audio",)),
                  dict(owner_id="carol", purposes=("avatar",))]:
        with pytest.raises(Exception) as refused:
            await kpay_app.media.attach(cover["id"], **wrong)
        assert refused.value.code == "invalid_media"
    described = await kpay_app.media.describe([cover["id"], tape["id"], "nope"])
    assert set(described) == {cover["id"], tape["id"]}
    assert described[tape["id"]]["duration_seconds"] == pytest.approx(3.0, abs=0.01)


@pytest.mark.gen_test
async def test_signed_url_for_another_action(kpay_app, student, consultant, tape):
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="alice", resource="tape:t1",
                                            action="enter"))
    response = await fetch(student, url)
    assert response.code == 403 and b"no_access" in response.body
    url = path_of(kpay_app.media.signed_url(tape["id"], user_id="carol", resource="tape:t1",
                                            action="enter"))
    assert (await fetch(consultant, url)).code == 200


def test_range_headers_parsed():
    from kpay.core.media.serving import Unsatisfiable, parse_range

    assert parse_range(None, 1000) is None
    assert parse_range("bytes=0-0", 1000) == (0, 0)
    assert parse_range("bytes=990-", 1000) == (990, 999)
    assert parse_range("bytes=-2000", 1000) == (0, 999)
    assert parse_range("bytes=10-5", 1000) is None  # invalid: ignored
    assert parse_range("bytes=0-1,5-6", 1000) is None  # several: the whole file
    assert parse_range("items=0-1", 1000) is None
    for unsatisfiable in ("bytes=1000-", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, 1000)


@pytest.mark.gen_test(timeout=30)
async def test_a_player_hanging_up_is_not_an_error(kpay_app, consultant, caplog):
    import asyncio
    import logging

    VIEWERS["t2"] = {"carol"}
    media = await upload(consultant, wav_bytes(60.0), kind="audio", purpose="lesson")
    url = path_of(kpay_app.media.signed_url(media["id"], user_id="carol", resource="tape:t2"))
    caplog.set_level(logging.WARNING)
    reader, writer = await asyncio.open_connection("127.0.0.1", kpay_app.port)
    writer.write(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.read(1000)).startswith(b"HTTP/1.1 200")
    writer.transport.abort()  # gone mid-file
    await asyncio.sleep(0.5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
