"""What an uploaded file really is, and the files kpay keeps of it.

The type comes from the content (``filetype``'s magic numbers), never from the name or
the type the client declared. Images are decoded and re-encoded by Pillow into the
variants pages use, which drops EXIF (places, camera serials), embedded scripts and
anything else that is not pixels; audio is parsed by mutagen for its duration; video is
kept as uploaded. These functions block: call them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import filetype
from PIL import Image, ImageOps

from kpay.core.errors import BadRequest

# What each kind accepts, by the MIME type filetype reads from the content.
ACCEPTED = {
    "image": {"image/jpeg", "image/png", "image/webp", "image/gif"},
    "audio": {"audio/mpeg", "audio/x-m4a", "audio/m4a", "audio/mp4", "audio/ogg",
              "audio/x-wav", "audio/wav", "audio/aac", "audio/webm", "video/webm",
              "video/mp4"},
    "video": {"video/mp4", "video/webm", "video/quicktime"},
}
# The Content-Type kpay serves each accepted type with. A recording from MediaRecorder
# is audio in a WebM or MP4 container, which filetype reads as video.
SERVED_AS = {
    "audio": {"video/webm": "audio/webm", "video/mp4": "audio/mp4", "audio/x-m4a": "audio/mp4",
              "audio/m4a": "audio/mp4", "audio/x-wav": "audio/wav"},
    "video": {"video/quicktime": "video/mp4"},
}
# Widths of the image variants ("full" is bounded on its longest side instead).
VARIANTS = {"thumb": 160, "card": 750}
FULL_MAX = 1600
JPEG_QUALITY = 85
# Bytes filetype needs to recognise every type it knows.
SNIFF_BYTES = 8192


def invalid(message: str, **details: object) -> BadRequest:
    return BadRequest(message, code="invalid_media", **details)


def sniff(head: bytes, kind: str) -> str:
    """The MIME type of a file starting with ``head`` if it is one ``kind`` accepts;
    else 400 ``invalid_media``."""
    found = filetype.guess_mime(head[:SNIFF_BYTES])
    if found is None and kind != "image" and head[4:8] == b"ftyp":
        # An ISO media file of a brand filetype does not list (Safari's MediaRecorder
        # writes "iso5"-style brands): MP4 to a player.
        found = "video/mp4"
    if found not in ACCEPTED[kind]:
        raise invalid(f"the file is not an accepted {kind} "
                      f"({found or 'unrecognised content'})", kind=kind)
    return found


def served_type(kind: str, mime: str) -> str:
    return SERVED_AS.get(kind, {}).get(mime, mime)


@dataclass
class Processed:
    """What to keep of an upload: ``files`` (variant name -> file) and what is known."""

    content_type: str
    files: dict[str, Path] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None

    def sizes(self) -> dict[str, int]:
        """Bytes of each file kept (blocks: call in a thread)."""
        return {name: path.stat().st_size for name, path in self.files.items()}


def process_image(source: Path, work: Path, max_pixels: int) -> Processed:
    """Decode, orient and re-encode an image into JPEG variants thumb, card and full."""
    # kpay's pixel cap is checked on the header, before anything is decoded; Pillow's
    # own guard (Image.MAX_IMAGE_PIXELS, process-wide, left at its default) stays behind
    # it and refuses at Image.open what is past twice its limit.
    try:
        with Image.open(source) as image:
            # "MPO": a phone's JPEG with a second picture (depth, HDR gain map); the
            # first picture, the photo, is what is kept (seek(0) below).
            if image.format not in ("JPEG", "MPO", "PNG", "WEBP", "GIF"):
                raise invalid("the file is not an accepted image", kind="image")
            width, height = image.size
            if width * height > max_pixels or width < 1 or height < 1:
                raise invalid(f"the image is too large ({width}x{height} pixels)",
                              kind="image", max_pixels=max_pixels)
            image.seek(0)
            image.load()
            picture = flatten(ImageOps.exif_transpose(image))
    except BadRequest:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise invalid("the file is not a readable image", kind="image") from None
    result = Processed("image/jpeg", width=picture.width, height=picture.height)
    work.mkdir(parents=True, exist_ok=True)
    for name, target_width in (*VARIANTS.items(), ("full", None)):
        if target_width is None:
            copy = picture.copy()
            copy.thumbnail((FULL_MAX, FULL_MAX), Image.Resampling.LANCZOS)
        else:
            copy = resized_to_width(picture, target_width)
        path = work / f"{name}.jpg"
        copy.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        result.files[name] = path
    return result


def flatten(image: Image.Image) -> Image.Image:
    """RGB pixels; transparency over white (JPEG has none)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def resized_to_width(image: Image.Image, width: int) -> Image.Image:
    """``image`` scaled down to ``width`` (never up), keeping its proportions."""
    if image.width <= width:
        return image.copy()
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def audio_duration(source: Path, mime: str) -> float | None:
    """Seconds of audio, read by mutagen, or None when the file does not say.

    WebM: mutagen cannot read Matroska, and a browser's MediaRecorder writes no duration
    into it anyway. MP4 from MediaRecorder (iOS) is fragmented and may carry none. MP3,
    WAV and Ogg, which mutagen reads fully, are refused when it cannot parse them.
    """
    if mime in ("video/webm", "audio/webm"):
        return None
    import mutagen

    try:
        parsed = mutagen.File(source)
    except Exception:  # mutagen raises many kinds of errors on a broken file
        parsed = None
    length = getattr(getattr(parsed, "info", None), "length", None)
    if parsed is None and mime in STRICTLY_PARSED:
        raise invalid("the file is not a readable audio file", kind="audio")
    return round(float(length), 3) if length else None


#: Audio types mutagen reads completely: one it cannot parse is broken or not audio.
STRICTLY_PARSED = ("audio/mpeg", "audio/x-wav", "audio/wav", "audio/ogg")


def process_media(source: Path, work: Path, kind: str, mime: str,
                  max_pixels: int) -> Processed:
    """Check ``source`` (whose content sniffed as ``mime``) and make what is kept."""
    if kind == "image":
        return process_image(source, work, max_pixels)
    content_type = served_type(kind, mime)
    result = Processed(content_type, files={"original": source})
    if kind == "audio":
        result.duration_seconds = audio_duration(source, mime)
    elif mime in ("video/mp4", "video/quicktime"):
        result.duration_seconds = video_duration(source)
    return result


def video_duration(source: Path) -> float | None:
    """An MP4's duration when mutagen can read it; optional for video."""
    try:
        from mutagen.mp4 import MP4

        length = MP4(source).info.length
    except Exception:
        return None
    return round(float(length), 3) if length else None
