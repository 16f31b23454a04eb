"""app.search: Chinese by bigrams, one character, Latin prefixes, escaping, ranking,
limits, and GET /api/v1/search."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from kpay.core.errors import BadRequest
from kpay.core.search import MAX_CANDIDATES, index_grams, query_grams


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


async def put(app, item_id: str, title: str, author: str = "王老师", **kw: Any) -> None:
    await app.search.put(kw.pop("kind", "course"), item_id, title=title, author_id="u-" + item_id,
                         author_name=author, **kw)


async def ids(app, query: str, **kw: Any) -> list[str]:
    items, _ = await app.search.find(query, **kw)
    return [item["id"] for item in items]


def test_grams_of_chinese_and_latin():
    assert {"产品", "品经", "经理", "产", "理"} <= index_grams("如何成为产品经理")
    assert query_grams("产品经理") == ["产品", "品经", "经理"]
    assert query_grams("产") == ["产"]
    # NFKC and lowercase: full-width Ｐｙｔｈｏｎ is python; prefixes find a word's start.
    assert {"p", "py", "pyth", "python"} <= index_grams("Ｐｙｔｈｏｎ入门")
    assert query_grams("PYTH 入门") == ["pyth", "入门"]
    # Punctuation and regex metacharacters separate runs and never become grams.
    assert query_grams(".*") == [] and query_grams("a.*b") == ["a", "b"]
    assert len(query_grams("好" * 500)) == 1  # cut to 50 characters, de-duplicated


@pytest.mark.gen_test
async def test_a_chinese_query_finds_the_title_and_the_author(kpay_app):
    await put(kpay_app, "c1", "如何成为产品经理")
    await put(kpay_app, "c2", "经理人的一天", author="李产品")
    await put(kpay_app, "c3", "亲子沟通课")
    assert await ids(kpay_app, "产品经理") == ["c1"]
    assert await ids(kpay_app, "亲子") == ["c3"]
    assert await ids(kpay_app, "产品经") == ["c1"]
    # One character: title hits before author-only hits, newest first within each.
    assert await ids(kpay_app, "品") == ["c1", "c2"]
    assert await ids(kpay_app, "王老师") == ["c3", "c1"]  # author of both, newest first
    assert await ids(kpay_app, "经理 产品") == ["c1", "c2"]
    assert await ids(kpay_app, "理财") == []


@pytest.mark.gen_test
async def test_latin_words_special_characters_and_metacharacters(kpay_app):
    await put(kpay_app, "c1", "Python 数据分析")
    await put(kpay_app, "c2", "C++ 入门 (a|b)*")
    assert await ids(kpay_app, "python") == ["c1"]
    assert await ids(kpay_app, "PYTH") == ["c1"]
    assert await ids(kpay_app, "thon") == []  # prefixes of words, not any substring
    # Metacharacters are neither regex nor grams: only the letters count.
    assert await ids(kpay_app, ".*") == []
    assert await ids(kpay_app, "(a|b)*") == ["c2"]
    assert await ids(kpay_app, "$where") == []
    assert await ids(kpay_app, "c++") == ["c2"]
    assert await ids(kpay_app, "") == ["c2", "c1"]  # no query: everything, newest first


@pytest.mark.gen_test
async def test_filters_visibility_removal_and_categories(kpay_app):
    search = kpay_app.search
    await put(kpay_app, "c1", "职场写作", category="职场")
    await put(kpay_app, "r1", "职场直播", kind="room", category="职场", extra={"price": 100})
    await put(kpay_app, "c2", "职场草稿", visible=False)
    assert await ids(kpay_app, "职场") == ["r1", "c1"]
    assert await ids(kpay_app, "职场", kind="course") == ["c1"]
    items, _ = await search.find("", kind="room", category="职场")
    assert items[0]["extra"] == {"price": 100} and items[0]["author_name"] == "王老师"
    await search.remove("room", "r1")
    assert await ids(kpay_app, "职场") == ["c1"]
    assert search.check_category("心理") == "心理" and search.check_category("") is None
    with pytest.raises(BadRequest):
        search.check_category("赌博")
    with pytest.raises(BadRequest):
        await search.put("Bad Kind!", "x", title="t", author_id="a", author_name="a")
    with pytest.raises(ValueError):
        await put(kpay_app, "c9", "大", extra={"blob": "x" * 3000})


@pytest.mark.gen_test
async def test_pages_are_bounded_and_the_backfill_runs_once(kpay_app):
    search = kpay_app.search

    async def items():
        for n in range(7):
            yield {"item_id": f"c{n}", "title": f"写作课 第{n}期", "author_id": "a",
                   "author_name": "作者"}

    assert await search.backfill("course", items()) == 7
    assert await search.backfill("course", items()) == 0  # once per kind
    first, after = await search.find("写作", limit=5)
    rest, end = await search.find("写作", limit=5, offset=after)
    assert len(first) == 5 and len(rest) == 2 and end is None
    assert {i["id"] for i in first + rest} == {f"c{n}" for n in range(7)}
    assert (await search.find("写作", limit=1000))[0].__len__() == 7  # limit capped at 50
    assert await search.find("写作", offset=MAX_CANDIDATES) == ([], None)


@pytest.mark.gen_test
async def test_the_search_route_is_public_and_checks_its_input(api, kpay_app):
    await put(kpay_app, "c1", "如何成为产品经理", category="职场")
    status, body = await api.get(f"/api/v1/search?q={quote('产品经理')}&kind=course")
    assert status == 200
    assert [i["title"] for i in body["items"]] == ["如何成为产品经理"]
    assert body["next_cursor"] is None
    status, body = await api.get(f"/api/v1/search?category={quote('职场')}&limit=1")
    assert status == 200 and len(body["items"]) == 1
    for bad in (f"category={quote('赌博')}", "kind=Bad!", "cursor=abc", "cursor=%C2%B2",
                "limit=500", "q=" + "a" * 201):
        status, body = await api.get("/api/v1/search?" + bad)
        assert status == 400 and body["error"]["code"] == "invalid_field", bad
    status, body = await api.get("/api/v1/categories")
    assert status == 200 and body["categories"][0] == "职场" and "其他" in body["categories"]


@pytest.mark.gen_test
async def test_a_failing_backfill_is_logged_and_tried_again(kpay_app, caplog):
    async def broken():
        yield {"item_id": "c1", "title": "写作", "author_id": "a", "author_name": "作者"}
        raise RuntimeError("database went away")

    async def fine():
        yield {"item_id": "c2", "title": "阅读", "author_id": "a", "author_name": "作者"}

    assert await kpay_app.search.backfill("course", broken()) == 1
    assert "backfilling course failed" in caplog.text
    assert await kpay_app.search.backfill("course", fine()) == 1  # no marker: tried again
    assert await kpay_app.search.backfill("course", fine()) == 0
