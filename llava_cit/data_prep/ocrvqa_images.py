"""`llava-cit data ocrvqa-images`: download OCR-VQA's images from their per-record URLs, the step that
fails most often when people prepare LLaVA / CoIN data.

Every image goes to `OUT/<id>.jpg` (LLaVA's mixture names `ocr_vqa/images/<id>.jpg`; what is not JPEG is
converted), verified by opening it with Pillow, written under a temporary name and renamed. Parallel
workers; each failure is retried with exponential back-off (not a 4xx answer: that is final); a rerun
fetches only what is missing or unreadable. A dead URL never stops the run: failures (id, URL, reason) are
written to a JSON-lines file and counted in the report.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from llava_cit.data.images import IMAGE_FAULTS

USER_AGENT = "llava-cit (OCR-VQA image download)"


@dataclass
class DownloadReport:
    downloaded: int = 0
    present: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason


def image_ok(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except IMAGE_FAULTS:  # a decompression bomb included
        return False


def fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) URLs of the dataset)
        return response.read()


def as_jpeg(body: bytes) -> bytes:
    """The image in `body` as JPEG bytes (already JPEG: unchanged); raises ValueError if it is not an image."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            if image.format == "JPEG":
                return body
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue()
    except IMAGE_FAULTS as err:  # a decompression bomb included
        kind = "an HTML page" if body.lstrip()[:1] == b"<" else f"{len(body)} bytes that are not a complete image"
        raise ValueError(f"not an image: {kind} ({err})") from None


def download_one(image_id: str, url: str, out: Path, retries: int, timeout: float, backoff: float) -> str | None:
    """None when `out/<id>.jpg` is written and readable, else the last reason it failed."""
    reason = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            body = as_jpeg(fetch(url, timeout))
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code}"
            if 400 <= err.code < 500 and err.code != 429:
                return reason  # the URL is gone; asking again does not bring it back
            continue
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError, ValueError) as err:
            reason = str(getattr(err, "reason", err)) or type(err).__name__
            if "timed out" in reason.lower() or isinstance(err, TimeoutError):
                reason = f"timed out after {timeout:g} s"
            continue
        target = out / f"{image_id}.jpg"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{image_id}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return None
    return reason


def download_images(data: dict[str, dict], out: Path, workers: int = 16, retries: int = 3, timeout: float = 30.0,
                    backoff: float = 1.0, failures: Path | None = None,
                    progress: Callable[[int], None] | None = None) -> DownloadReport:
    out.mkdir(parents=True, exist_ok=True)
    report = DownloadReport()
    todo = []
    for image_id, record in data.items():
        target = out / f"{image_id}.jpg"
        if target.is_file() and image_ok(target):
            report.present += 1
            if progress:
                progress(1)
        else:
            todo.append((image_id, record["imageURL"]))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(download_one, image_id, url, out, retries, timeout, backoff): (image_id, url)
                   for image_id, url in todo}
        for future in as_completed(futures):
            image_id, url = futures[future]
            try:
                reason = future.result()
            except Exception as err:  # never let one image stop the run
                reason = f"{type(err).__name__}: {err}"
            if reason is None:
                report.downloaded += 1
            else:
                report.failed[image_id] = reason
            if progress:
                progress(1)
    if failures is not None:
        urls = dict(todo)
        lines = [json.dumps({"id": i, "url": urls[i], "reason": r}) for i, r in sorted(report.failed.items())]
        from llava_cit.util.atomic import write_text

        write_text(failures, "".join(line + "\n" for line in lines))
    return report
