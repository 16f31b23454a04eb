"""Drawing a share poster (Pillow, segno): cover, title wrapped for Chinese, price,
author, and a QR code of the page. Pure functions of their input, run in a worker
thread (kpay/core/posters.py): drawing takes tens of milliseconds of CPU.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

log = logging.getLogger("kpay.posters")

WIDTH, HEIGHT = 750, 1200
COVER_HEIGHT = 420
MARGIN = 48
QR_SIZE = 220
#: Quiet zone around the QR code, in modules (scanners want some white around it).
QR_BORDER = 3
#: A Latin word (kept on one line when it fits), or any other single character.
TOKEN = re.compile(r"[A-Za-z0-9'.,-]+|.", re.S)
#: CJK fonts tried in order (Debian: fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk).
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
)
INK, MUTED, PRICE_RED, FREE_GREEN = "#1f2328", "#5b6470", "#d0342c", "#05703f"
PLACEHOLDER_COLORS = ("#05703f", "#1d5fa8", "#7a3fb0", "#b0521d", "#0e6f73")


@dataclass(frozen=True)
class PosterContent:
    title: str
    description: str
    price: int | None
    author: str | None
    url: str
    cover: bytes | None = None


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """The first CJK font installed, or None (logged once: posters then use Pillow's
    default font, which has no Chinese glyphs)."""
    for path in FONT_PATHS:
        if Path(path).is_file():
            return path
    log.warning("posters: no CJK font found (apt-get install fonts-wqy-microhei); "
                "Chinese text will not render")
    return None


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    if path is None:
        try:
            return ImageFont.load_default(size)
        except TypeError:  # Pillow before 10.1: one size only
            return ImageFont.load_default()
    return ImageFont.truetype(path, size)


def price_text(fen: int | None) -> str | None:
    if fen is None:
        return None
    if fen == 0:
        return "免费"
    return f"¥{fen // 100}.{fen % 100:02d}"


def wrap(draw: ImageDraw.ImageDraw, text: str, face: ImageFont.ImageFont | ImageFont.FreeTypeFont,
         width: int, max_lines: int) -> list[str]:
    """Lines of ``text`` no wider than ``width``, broken between any two Chinese
    characters (Chinese has no spaces) and between Latin words (a word too long for a
    line is broken too); the last kept line ends in "…" when text was left out."""
    tokens = TOKEN.findall(" ".join(text.split()))
    lines: list[str] = []
    line = ""
    while tokens:
        token = tokens.pop(0)
        if draw.textlength(line + token, font=face) <= width:
            line += token
            continue
        if len(token) > 1 and not line.strip():
            tokens[:0] = list(token)  # a word wider than a line: break it anywhere
            continue
        lines.append(line.rstrip())
        line = token.lstrip()
        if len(lines) == max_lines:
            break
    else:
        if line.strip():
            lines.append(line)
        return lines
    last = lines[-1]
    while last and draw.textlength(last + "…", font=face) > width:
        last = last[:-1]
    lines[-1] = last + "…"
    return lines


def cover_image(cover: bytes | None, title: str) -> Image.Image:
    """The cover cropped to fill the top band, or a coloured band with the title's
    first character when there is none (or it does not decode)."""
    if cover:
        try:
            with Image.open(io.BytesIO(cover)) as image:
                image.draft("RGB", (WIDTH, COVER_HEIGHT))
                return ImageOps.fit(image.convert("RGB"), (WIDTH, COVER_HEIGHT))
        except (OSError, ValueError, Image.DecompressionBombError):
            log.info("posters: cover did not decode; drawing the placeholder")
    color = PLACEHOLDER_COLORS[sum(map(ord, title)) % len(PLACEHOLDER_COLORS)]
    band = Image.new("RGB", (WIDTH, COVER_HEIGHT), color)
    draw = ImageDraw.Draw(band)
    initial = (title.strip() or "k")[0]
    draw.text((WIDTH / 2, COVER_HEIGHT / 2), initial, fill="white", font=font(180),
              anchor="mm")
    return band


def qr_image(url: str) -> Image.Image:
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buffer, kind="png", scale=10, border=QR_BORDER)
    buffer.seek(0)
    with Image.open(buffer) as code:
        return code.convert("RGB").resize((QR_SIZE, QR_SIZE), Image.Resampling.NEAREST)


def draw_poster(content: PosterContent) -> bytes:
    """The poster as PNG bytes (750x1200)."""
    poster = Image.new("RGB", (WIDTH, HEIGHT), "white")
    poster.paste(cover_image(content.cover, content.title), (0, 0))
    draw = ImageDraw.Draw(poster)
    inner = WIDTH - 2 * MARGIN
    y = COVER_HEIGHT + 40
    title_face = font(44)
    for line in wrap(draw, content.title, title_face, inner, 3):
        draw.text((MARGIN, y), line, fill=INK, font=title_face)
        y += 60
    if content.description:
        y += 8
        body_face = font(28)
        for line in wrap(draw, content.description, body_face, inner, 2):
            draw.text((MARGIN, y), line, fill=MUTED, font=body_face)
            y += 40
    y += 16
    price = price_text(content.price)
    if price:
        draw.text((MARGIN, y), price, font=font(48),
                  fill=FREE_GREEN if content.price == 0 else PRICE_RED)
        y += 68
    if content.author:
        author_face = font(30)
        author = wrap(draw, f"主讲：{content.author}", author_face, inner, 1)[0]
        draw.text((MARGIN, y), author, fill=INK, font=author_face)
    # The bottom band: the QR code on the right, how to use it on the left.
    band_top = HEIGHT - QR_SIZE - 2 * MARGIN
    draw.line((MARGIN, band_top, WIDTH - MARGIN, band_top), fill="#e5e7eb", width=2)
    qr_top = band_top + MARGIN
    poster.paste(qr_image(content.url), (WIDTH - MARGIN - QR_SIZE, qr_top))
    draw.text((MARGIN, qr_top + 50), "长按识别二维码", fill=INK, font=font(34))
    draw.text((MARGIN, qr_top + 104), "查看详情、立即参与", fill=MUTED, font=font(28))
    out = io.BytesIO()
    poster.save(out, format="PNG", optimize=True)
    return out.getvalue()
