"""Lesson media through the media service: files checked when named (someone else's or
the wrong kind refused), served to readers only as short-lived signed URLs that stop
working when they expire and when the reader loses access; slides signed the same way;
covers public."""

from __future__ import annotations

import pytest
from drip_helpers import lesson

from kpay.testmedia import png_bytes, upload, wav_bytes


async def fetch(api, url: str, headers: dict[str, str] | None = None) -> int:
    """GET a media URL without a token (the signature is the ticket); the status."""
    absolute = url if url.startswith("http") else api.base + url
    response = await api.http.fetch(absolute, raise_error=False, follow_redirects=False,
                                    headers=headers or {})
    return response.code


async def audio_course(drip, api, author):
    audio = await upload(api, author, "audio", "lesson", wav_bytes(4), "lesson.wav")
    course = await drip.course(author, [
        {"title": "听一听", "body": "", "audio_media_id": audio["id"]},
        lesson("读一读", body="正文")])
    return course, audio


@pytest.mark.gen_test(timeout=60)
async def test_lesson_media_must_be_the_authors_and_of_the_right_kind(drip, api):
    author = await drip.author()
    other = await drip.author("other-author")
    theirs = await upload(api, other, "audio", "lesson", wav_bytes(2), "x.wav")
    mine = await upload(api, author, "audio", "lesson", wav_bytes(2), "y.wav")
    image = await upload(api, author, "image", "slide", png_bytes(), "s.png")
    attempts = [
        {"title": "别人的", "audio_media_id": theirs["id"]},  # someone else's file
        {"title": "类型不对", "video_media_id": mine["id"]},  # audio named as video
        {"title": "图片当音频", "audio_media_id": image["id"]},
        {"title": "不存在", "audio_media_id": "nosuchfile"},
        {"title": "别人的图", "body": f"![图](media:{theirs['id']})"},
    ]
    for body in attempts:
        status, reply = await api.post("/api/v1/courses", {
            "title": "课", "price": 0, "lessons": [body]}, author)
        assert (status, reply["error"]["code"]) == (400, "invalid_media"), body
    _, mine_listed = await api.get("/api/v1/courses?mine=1", author)
    assert mine_listed["courses"] == []  # nothing saved

    course, _ = await audio_course(drip, api, author)
    lesson_path = f"/api/v1/courses/{course['id']}/lessons/{course['lessons'][1]['id']}"
    status, reply = await drip.patch(lesson_path, {"audio_media_id": theirs["id"]}, author)
    assert (status, reply["error"]["code"]) == (400, "invalid_media")
    status, reply = await drip.patch(f"/api/v1/courses/{course['id']}",
                                     {"cover_media_id": mine["id"]}, author)
    assert (status, reply["error"]["code"]) == (400, "invalid_media")


@pytest.mark.gen_test(timeout=60)
async def test_signed_audio_url_for_readers_only_and_short_lived(drip, api):
    author = await drip.author()
    course, _ = await audio_course(drip, api, author)
    audio_lesson = course["lessons"][0]
    assert audio_lesson["media"]["kind"] == "audio"
    assert audio_lesson["media"]["duration_seconds"] == pytest.approx(4, abs=0.5)
    path = f"/api/v1/courses/{course['id']}/lessons/{audio_lesson['id']}"

    stranger = await api.login("eve", "student")
    status, reply = await api.get(path, stranger)
    assert (status, reply["error"]["code"]) == (403, "not_enrolled")

    student = await drip.student("sam", course)
    status, reply = await api.get(path, student)
    assert status == 200, reply
    url = reply["lesson"]["audio_url"]
    assert "/media/s" in url
    assert await fetch(api, url) == 200
    # Seeking: a range request is answered in part (or redirected to storage that does).
    assert await fetch(api, url, {"Range": "bytes=0-99"}) in (206, 302, 307)

    # The signature is the reader's: someone else's copy of the URL is not a ticket once
    # the reader loses access (the lesson withdrawn), nor after it expires.
    status, _ = await drip.patch(path, {"published": False}, author)
    assert status == 200
    assert await fetch(api, url) in (403, 404, 410)
    status, _ = await drip.patch(path, {"published": True}, author)
    assert status == 200
    _, reply = await api.get(path, student)
    fresh = reply["lesson"]["audio_url"]
    assert await fetch(api, fresh) == 200
    await drip.advance(6 * 3600)
    assert await fetch(api, fresh) in (403, 410)
    _, reply = await api.get(path, await api.login("sam", "student"))
    assert await fetch(api, reply["lesson"]["audio_url"]) == 200  # a new one works


@pytest.mark.gen_test(timeout=60)
async def test_slides_are_signed_per_reader_and_covers_are_public(drip, api):
    author = await drip.author()
    slide = await upload(api, author, "image", "slide", png_bytes(), "slide.png")
    cover = await upload(api, author, "image", "cover", png_bytes(), "cover.png")
    body = f"看图：\n\n![第一张](media:{slide['id']})"
    course = await drip.course(author, [lesson("图文", body=body)])
    status, reply = await drip.patch(f"/api/v1/courses/{course['id']}",
                                     {"cover_media_id": cover["id"]}, author)
    assert status == 200, reply
    assert reply["course"]["cover_media_id"] == cover["id"]
    assert await fetch(api, reply["course"]["cover"]) == 200  # public: no signature needed

    student = await drip.student("sam", course)
    path = f"/api/v1/courses/{course['id']}/lessons/{course['lessons'][0]['id']}"
    _, read = await api.get(path, student)
    html = read["lesson"]["body_html"]
    assert "/media-slide/" not in html and "/media/s" in html
    src = html.split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert await fetch(api, src) == 200

    # A placeholder typed as raw HTML is not a checked slide: never signed.
    other = await drip.author("other-author")
    raw = f'<img src="/media-slide/{slide["id"]}" alt="x">'
    sneaky = await drip.course(other, [lesson("偷图", body=raw)])
    _, read = await api.get(f"/api/v1/courses/{sneaky['id']}/lessons/{sneaky['lessons'][0]['id']}",
                            other)
    assert "/media/s" not in read["lesson"]["body_html"]

    # The preview signs only the author's own slides.
    their_course = await drip.course(other, [lesson("x")], publish=False)
    status, preview = await api.post(f"/api/v1/courses/{their_course['id']}/preview",
                                     {"body": f"![偷](media:{slide['id']})"}, other)
    assert status == 200
    assert "/media/s" not in preview["html"]
    status, preview = await api.post(f"/api/v1/courses/{course['id']}/preview",
                                     {"body": f"![图](media:{slide['id']})"}, author)
    assert "/media/s" in preview["html"]


#: The start of an MP4 (an ftyp box): enough for the media service, which sniffs the
#: type of a video and keeps it as uploaded.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 2048


@pytest.mark.gen_test(timeout=60)
async def test_a_video_lesson_gets_a_signed_video_url(drip, api):
    author = await drip.author()
    video = await upload(api, author, "video", "lesson", MP4_HEAD, "lesson.mp4")
    course = await drip.course(author, [{"title": "看一看", "video_media_id": video["id"]}])
    assert course["lessons"][0]["media"]["kind"] == "video"
    student = await drip.student("sam", course)
    _, read = await api.get(
        f"/api/v1/courses/{course['id']}/lessons/{course['lessons'][0]['id']}", student)
    assert read["lesson"]["audio_url"] is None
    assert await fetch(api, read["lesson"]["video_url"]) == 200
    # Removing the medium of a lesson without a body is refused (nothing left to show).
    status, body = await drip.patch(
        f"/api/v1/courses/{course['id']}/lessons/{course['lessons'][0]['id']}",
        {"video_media_id": None}, author)
    assert (status, body["error"]["code"]) == (400, "invalid_field")
