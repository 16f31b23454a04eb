"""static/js/media.js in the browser: uploadFile sends chunks with progress, survives a
dropped chunk by resuming at the server's offset and a lost answer to the last chunk by
asking for the result, and the upload button shows the result, or a refusal in
Chinese; a voice recorded with startRecording (chromium's fake microphone) uploads as
WebM audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.media.conftest import jpeg_with_exif
from tests.pages.pagekit import CHROMIUM, CHROMIUM_ARGS, STATIC, StandInPlugin


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": []},
            "media": {"chunk_bytes": 65536, "path": str(tmp_path / "media")}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("standin_wechat_pay", StandInPlugin())]


UPLOAD_NOISE = """
async () => {
  const { KPay } = await import('/static/js/kpay.js');
  const { uploadFile } = await import('/static/js/media.js');
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 480;
  const context = canvas.getContext('2d');
  const pixels = context.createImageData(640, 480);
  let seed = 7;
  for (let i = 0; i < pixels.data.length; i += 1) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    pixels.data[i] = i % 4 === 3 ? 255 : seed & 255;
  }
  context.putImageData(pixels, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.95));
  const progress = [];
  const media = await uploadFile(new KPay(), blob, {
    kind: 'image', purpose: 'cover', onProgress: (sent, total) => progress.push([sent, total]),
  });
  return { media, progress, size: blob.size };
}
"""


@pytest.mark.gen_test(timeout=90)
async def test_upload_file_resumes_after_a_dropped_chunk(pages, api):
    token = await api.login("carol", "consultant", "陈老师")
    page = await pages.new_page(token=token)
    dropped: list[str] = []
    lost: list[str] = []

    async def drop_second_chunk(route: Any) -> None:
        request = route.request
        content_range = request.headers.get("content-range", "")
        if request.method == "PUT" and not dropped and content_range.startswith("bytes 65536-"):
            dropped.append(content_range)  # never reaches the server
            await route.abort("connectionreset")
            return
        span, _, total = content_range.removeprefix("bytes ").partition("/")
        if request.method == "PUT" and not lost and span.endswith(f"-{int(total or 0) - 1}"):
            # The last chunk reaches the server, which completes the upload, but its
            # answer is lost on the way back.
            await route.fetch()
            lost.append(content_range)
            await route.abort("connectionreset")
            return
        await route.continue_()

    await page.route("**/api/v1/media/uploads/*", drop_second_chunk)
    await pages.open(page, "/")
    result = await page.evaluate(UPLOAD_NOISE)
    assert dropped, "the second chunk was never sent"
    assert lost, "the last chunk's answer was never lost"
    size = result["size"]
    assert size > 3 * 65536
    sent = [p[0] for p in result["progress"]]
    assert sent == sorted(sent) and sent[0] == 0 and sent[-1] == size
    assert all(total == size for _, total in result["progress"])
    assert len(sent) >= size // 65536
    media = result["media"]
    assert (media["width"], media["height"]) == (640, 480)
    assert media["url"].endswith(f"/media/{media['id']}/card")
    # The aborted request is the test's doing, not the page's.
    pages.problems[:] = [p for p in pages.problems if "ERR_" not in p]


BUTTON = """
async () => {
  const { KPay } = await import('/static/js/kpay.js');
  const { uploadButton } = await import('/static/js/media.js');
  const { errorText } = await import('/static/js/ui.js');
  // The home page's own parts stay (its script still finds them), hidden.
  const main = document.querySelector('main') || document.body;
  for (const child of main.children) child.hidden = true;
  const box = document.createElement('section');
  box.className = 'card';
  const title = document.createElement('h2');
  title.textContent = '课程封面';
  const preview = document.createElement('img');
  preview.alt = '封面预览';
  preview.hidden = true;
  preview.className = 'upload-preview';
  const error = document.createElement('p');
  error.setAttribute('role', 'alert');
  error.className = 'alert';
  const { element } = uploadButton(new KPay(), {
    kind: 'image', purpose: 'cover', text: '上传封面',
    onDone: (media) => { preview.src = media.url; preview.hidden = false; error.textContent = ''; },
    onError: (e) => { error.textContent = errorText(e); },
  });
  element.id = 'cover-upload';
  box.append(title, element, preview, error);
  main.append(box);
}
"""


@pytest.mark.gen_test(timeout=90)
async def test_upload_button_shows_the_cover_or_a_chinese_refusal(pages, api, tmp_path):
    token = await api.login("carol", "consultant", "陈老师")
    page = await pages.new_page(token=token)
    await pages.open(page, "/")
    await page.evaluate(BUTTON)
    fake = tmp_path / "封面.jpg"
    fake.write_bytes(b"<svg onload=alert(1)>" + b" " * 2000)
    await page.set_input_files("#cover-upload input", str(fake))
    await expect(page.get_by_role("alert")).to_have_text(
        "文件不是可用的图片（支持 JPG、PNG、WebP、GIF）")
    await pages.screenshot(page, "media-upload-refused")
    real = tmp_path / "cover.jpg"
    real.write_bytes(jpeg_with_exif(1200, 675))
    await page.set_input_files("#cover-upload input", str(real))
    preview = page.get_by_alt_text("封面预览")
    await expect(preview).to_be_visible()
    assert await preview.evaluate("(img) => img.complete && img.naturalWidth") == 750
    await expect(page.locator("#cover-upload")).to_contain_text("已上传")
    await pages.screenshot(page, "media-upload")


@pytest.fixture
def browser(io_loop: Any) -> Any:
    """Chromium with a fake microphone that needs no permission prompt."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    playwright = io_loop.run_sync(lambda: async_playwright().start())
    try:
        launched = io_loop.run_sync(lambda: playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream",
                                            "--use-fake-ui-for-media-stream"]))
    except BaseException:
        io_loop.run_sync(playwright.stop)
        raise
    yield launched
    io_loop.run_sync(launched.close)
    io_loop.run_sync(playwright.stop)


RECORD = """
async () => {
  const { KPay } = await import('/static/js/kpay.js');
  const { startRecording, recordingType, uploadFile } = await import('/static/js/media.js');
  const recording = await startRecording();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const blob = await recording.stop();
  const media = await uploadFile(new KPay(), blob, { kind: 'audio', purpose: 'answer' });
  return { type: recordingType(), blobType: blob.type, size: blob.size, media };
}
"""


@pytest.mark.gen_test(timeout=90)
async def test_recorded_voice_is_uploaded_as_audio(pages, api):
    token = await api.login("carol", "consultant", "陈老师")
    page = await pages.new_page(token=token)
    await pages.open(page, "/")
    result = await page.evaluate(RECORD)
    assert result["type"] == "audio/webm;codecs=opus"
    assert result["blobType"].startswith("audio/webm")
    assert result["size"] > 1000
    media = result["media"]
    assert media["kind"] == "audio" and media["content_type"] == "audio/webm"
    assert media["size"] == result["size"]
