"""Author text to safe HTML, and URL checks for covers and media.

Markdown passes raw HTML through, so the rendered HTML is cleaned with nh3 (the
ammonia sanitiser): no <script>/<style>/<iframe>, no event-handler attributes, and
links only to http, https and mailto (no ``javascript:``). Rendering happens when the
author saves, so reading a lesson costs no Markdown work.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import markdown
import nh3

MARKDOWN_EXTENSIONS = ["extra", "sane_lists"]
LINK_SCHEMES = {"http", "https", "mailto"}
MEDIA_SCHEMES = ("http", "https")


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to put into the H5 page as it is."""
    html = markdown.markdown(text, extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return nh3.clean(html, url_schemes=LINK_SCHEMES, link_rel="noopener noreferrer")


def check_media_url(value: str) -> str:
    """An absolute http(s) URL, or ValueError (pydantic turns it into a 400)."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in MEDIA_SCHEMES or not parts.netloc:
        raise ValueError("must be an absolute http or https URL")
    return value
