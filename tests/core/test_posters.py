"""Share posters (GET /api/v1/posters/{resource}) and the share_card hook: a real PNG
whose QR code encodes the page URL, Chinese drawn with a CJK font, 404 for what the
asker may not see, and the disk cache."""

from __future__ import annotations

import io
from typing import Any

import pytest
import segno
from PIL import Image

from kpay import hookimpl
from kpay.core import poster_draw
from kpay.core.poster_draw import MARGIN, QR_BORDER, QR_SIZE, WIDTH, PosterContent, draw_poster
from kpay.core.posters import PosterCache
from kpay.testmedia import upload


class GiftShelf:
    """A throwaway plugin owning ``gift:<id>``: gift g1 is public, g2 is hidden from
    everyone but bob, anything else does not exist."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @hookimpl
    def register_collections(self) -> list[str]:
        return []

    @hookimpl
    def share_card(self, resource: str, user_id: str) -> Any:
        if not resource.startswith("gift:"):
            return None
        self.asked.append((resource, user_id))

        async def card() -> dict[str, Any] | None:
            ident = resource.removeprefix("gift:")
            if ident.startswith("md"):  # gift:<media id>: a gift with that cover
                return {"title": "有封面的礼物", "price": 0, "cover_media_id": ident,
                        "path": "/static/gift.html"}
            if ident == "g1" or (ident == "g2" and user_id == "bob"):
                return {"title": "零基础学会手冲咖啡：从选豆到拉花的二十一天", "description":
                        "每天十分钟", "price": 990, "author_id": "carol",
                        "path": f"/static/gift.html?id={ident}"}
            return None

        return card()


@pytest.fixture
def shelf() -> GiftShelf:
    return GiftShelf()


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": ["live_qa", "course_drip"]}}


@pytest.fixture
def kpay_extra_plugins(shelf: GiftShelf) -> list[tuple[str, Any]]:
    return [("gift_shelf", shelf)]


async def fetch_png(api: Any, path: str, token: str) -> tuple[int, bytes, Any]:
    response = await api.http.fetch(api.base + path, headers={"Authorization": f"Bearer {token}"},
                                    raise_error=False)
    return response.code, response.body or b"", response.headers


def qr_matrix(png: bytes) -> list[list[bool]]:
    """The modules of the poster's QR code, read back from its pixels (dark = True)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    left, top = WIDTH - MARGIN - QR_SIZE, image.height - QR_SIZE - MARGIN
    # Find the symbol's size from the finder pattern: count modules along the top edge.
    code = image.crop((left, top, left + QR_SIZE, top + QR_SIZE))
    return code


def decoded_matches(png: bytes, url: str) -> bool:
    """Whether the drawn QR code's modules are those segno makes for ``url``."""
    expected = segno.make(url, error="m", micro=False)
    modules = expected.symbol_size(scale=1, border=QR_BORDER)[0]
    code = qr_matrix(png)
    cell = QR_SIZE / modules
    drawn = [[code.getpixel((int((x + 0.5) * cell), int((y + 0.5) * cell))) < 128
              for x in range(modules)] for y in range(modules)]
    want = [[False] * modules for _ in range(modules)]
    for y, row in enumerate(expected.matrix):
        for x, dark in enumerate(row):
            want[y + QR_BORDER][x + QR_BORDER] = bool(dark)
    return drawn == want


@pytest.mark.gen_test
async def test_poster_is_a_png_with_the_page_qr(api, kpay_app, shelf):
    await api.login("carol", "consultant", name="咖啡师卡萝")
    token = await api.login("alice", "student")
    status, png, headers = await fetch_png(api, "/api/v1/posters/gift:g1", token)
    assert status == 200 and headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (750, 1200)
    page = f"http://127.0.0.1:{kpay_app.port}/static/gift.html?id=g1"
    assert decoded_matches(png, page)
    assert not decoded_matches(png, page + "x")  # the check can fail
    assert headers["X-Poster-Cache"] == "miss"


@pytest.mark.gen_test
async def test_hidden_or_unknown_resources_are_404(api, kpay_app, shelf):
    alice = await api.login("alice", "student")
    bob = await api.login("bob", "student")
    for path in ("gift:g2", "gift:nope", "room:nope", "course:nope", "nothing:x", "user:alice",
                 "user:nobody"):
        status, _, _ = await fetch_png(api, f"/api/v1/posters/{path}", alice)
        assert status == 404, path
    status, _, _ = await fetch_png(api, "/api/v1/posters/gift:g2", bob)
    assert status == 200
    status, body = await api.get("/api/v1/posters/gift:g1")
    assert status == 401
    status, body = await api.get("/api/v1/posters/not-a-resource", alice)
    assert status == 400 and body["error"]["field"] == "resource"


@pytest.mark.gen_test
async def test_second_request_is_a_cache_hit_and_an_edit_is_not(api, kpay_app):
    consultant = await api.login("carol", "consultant", name="卡萝")
    alice = await api.login("alice", "student")
    status, reply = await api.post("/api/v1/rooms", {"title": "周五晚答疑", "ticket_price": 500},
                                   consultant)
    assert status == 201, reply
    room_id = reply["room"]["id"]
    path = f"/api/v1/posters/room:{room_id}"
    _, first, headers = await fetch_png(api, path, alice)
    assert headers["X-Poster-Cache"] == "miss"
    _, again, headers = await fetch_png(api, path, alice)
    assert headers["X-Poster-Cache"] == "hit" and again == first
    status, _ = await api.request("PATCH", f"/api/v1/rooms/{room_id}", {"title": "改了标题"},
                                  consultant)
    assert status == 200
    _, edited, headers = await fetch_png(api, path, alice)
    assert headers["X-Poster-Cache"] == "miss" and edited != first


@pytest.mark.gen_test
async def test_course_draft_only_for_its_author_and_consultant_profile(api, kpay_app):
    author = await api.login("carol", "consultant", name="卡萝")
    alice = await api.login("alice", "student")
    status, reply = await api.post("/api/v1/courses", {
        "title": "二十一天手冲咖啡", "price": 0,
        "lessons": [{"title": "第一课", "body": "选豆"}]}, author)
    assert status == 201, reply
    course_id = reply["course"]["id"]
    path = f"/api/v1/posters/course:{course_id}"
    assert (await fetch_png(api, path, alice))[0] == 404  # a draft
    assert (await fetch_png(api, path, author))[0] == 200
    status, _ = await api.post(f"/api/v1/courses/{course_id}/publish", {}, author)
    assert status == 200
    assert (await fetch_png(api, path, alice))[0] == 200
    status, png, _ = await fetch_png(api, "/api/v1/posters/user:carol", alice)
    assert status == 200
    assert decoded_matches(png, f"http://127.0.0.1:{kpay_app.port}/static/profile.html?id=carol")


def test_chinese_is_drawn_with_a_cjk_font():
    """Two different Chinese titles draw different pixels: a font without CJK glyphs
    would draw the same empty boxes for both."""
    assert poster_draw.font_path() is not None, "install fonts-wqy-microhei"

    def title_band(title: str) -> bytes:
        png = draw_poster(PosterContent(title, "", None, None, "https://example.com/"))
        image = Image.open(io.BytesIO(png)).convert("L")
        return image.crop((MARGIN, 460, WIDTH - MARGIN, 520)).tobytes()

    assert title_band("春眠不觉晓") != title_band("处处闻啼鸟")
    band = title_band("春眠不觉晓")
    assert min(band) < 100  # dark ink was drawn


def test_title_wraps_and_ends_with_an_ellipsis():
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    lines = poster_draw.wrap(draw, "长" * 200, poster_draw.font(44), 654, 3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert poster_draw.wrap(draw, "短标题", poster_draw.font(44), 654, 3) == ["短标题"]
    # A Latin word is not split across lines when it fits on the next one.
    lines = poster_draw.wrap(draw, "二十一天实战训练营二十一天 Coffee 101", poster_draw.font(44),
                             654, 3)
    assert lines == ["二十一天实战训练营二十一天", "Coffee 101"]


def test_cache_stays_under_its_size(tmp_path):
    cache = PosterCache(tmp_path, limit=2500)
    for n in range(5):
        cache.put(f"k{n}", bytes(1000))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and cache.get("k4") == bytes(1000) and cache.get("k0") is None


async def upload_cover(api: Any, token: str, color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (800, 450), color).save(buffer, format="PNG")
    data = buffer.getvalue()
    return (await upload(api, token, "image", "cover", data, "cover.png"))["id"]


@pytest.mark.gen_test
async def test_the_cover_is_read_from_media_storage(api, kpay_app):
    token = await api.login("carol", "consultant")
    media_id = await upload_cover(api, token, "#d02020")
    status, png, _ = await fetch_png(api, f"/api/v1/posters/gift:{media_id}", token)
    assert status == 200
    image = Image.open(io.BytesIO(png)).convert("RGB")
    red, green, blue = image.getpixel((375, 200))
    assert red > 180 and green < 80 and blue < 80, (red, green, blue)  # the cover, drawn
    # Taken down: the placeholder instead (never the removed image).
    await kpay_app.store["media"].update_one({"_id": media_id}, {"$set": {"status": "taken_down"}})
    _, png, _ = await fetch_png(api, f"/api/v1/posters/gift:{media_id}", token)
    assert Image.open(io.BytesIO(png)).convert("RGB").getpixel((375, 200)) != (red, green, blue)


class TestRateLimited:
    """Drawing costs CPU: the route is in the ``write`` class, not ``read``."""

    @pytest.fixture
    def kpay_overrides(self) -> dict[str, Any]:
        return {"plugins": {"enabled": []},
                "limits": {"enabled": True, "write_burst": 2, "write_per_second": 0.01}}

    @pytest.mark.gen_test
    async def test_third_poster_in_a_row_is_429(self, api, kpay_app):
        token = await api.login("alice", "student")
        statuses = [(await fetch_png(api, "/api/v1/posters/gift:g1", token))[0]
                    for _ in range(3)]
        assert statuses == [200, 200, 429]
