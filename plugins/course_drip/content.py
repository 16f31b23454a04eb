"""Author text to safe HTML, and URL checks for covers and media.

Slides (images uploaded with purpose ``slide``) are written ``![说明](media:<id>)``. They
are paid content, so the stored HTML keeps only a placeholder ``/media-slide/<id>``
and each read swaps it for a short-lived URL signed for that reader
(:func:`sign_slides`, docs/course_drip.md "Lesson media").

Markdown passes raw HTML through, so the rendered HTML is cleaned with nh3 (the
ammonia sanitiser): no <script>/<style>/<iframe>, no event-handler attributes, and
links only to http, https and mailto (no ``javascript:``). Rendering happens when the
author saves, so reading a lesson costs no Markdown work.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import markdown
import nh3

MARKDOWN_EXTENSIONS = ["extra", "sane_lists"]
LINK_SCHEMES = {"http", "https", "mailto"}
MEDIA_SCHEMES = ("http", "https")
#: A media id as the media service makes them; anything else is left as text.
MEDIA_ID = r"[A-Za-z0-9_-]{1,64}"
SLIDE_REF = re.compile(rf"\]\(\s*media:({MEDIA_ID})\s*\)")
SLIDE_SRC = re.compile(rf'src="/media-slide/({MEDIA_ID})"')
SLIDE_PLACEHOLDER = "/media-slide/"


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to put into the H5 page as it is."""
    text = SLIDE_REF.sub(lambda m: f"]({SLIDE_PLACEHOLDER}{m.group(1)})", text)
    rendered = markdown.markdown(text, extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return nh3.clean(rendered, url_schemes=LINK_SCHEMES, link_rel="noopener noreferrer")


def slide_ids(text: str) -> list[str]:
    """The media ids of the slides a Markdown body shows, each once, in order."""
    return list(dict.fromkeys(SLIDE_REF.findall(text)))


def sign_slides(body_html: str, url_of: Callable[[str], str | None]) -> str:
    """The rendered HTML with each slide placeholder replaced by ``url_of(media_id)``
    (an empty ``src`` when it gives None: a file taken down)."""
    def swap(match: re.Match[str]) -> str:
        url = url_of(match.group(1))
        return f'src="{html.escape(url or "", quote=True)}"'
    return SLIDE_SRC.sub(swap, body_html)


def check_media_url(value: str) -> str:
    """An absolute http(s) URL, or ValueError (pydantic turns it into a 400)."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in MEDIA_SCHEMES or not parts.netloc:
        raise ValueError("must be an absolute http or https URL")
    return value
