"""Zip downloads (web.downloads): limits, threads, blocks, files that vanish."""

from __future__ import annotations

import io
import os
import threading
import zipfile

import pytest

from octoprint_layercapture.web import downloads as zips
from octoprint_layercapture.web.api import ApiError


def test_zip_downloads_are_limited_per_user_and_in_total():
    downloads = zips.ZipDownloads(per_user=2, total=3)
    first = downloads.acquire("ann", "a" * 16)
    downloads.acquire("ann", "b" * 16)
    with pytest.raises(ApiError) as info:
        downloads.acquire("ann", "c" * 16)
    assert info.value.status == 429 and "at most 2 at a time" in info.value.message
    downloads.acquire("bob", "c" * 16)
    with pytest.raises(ApiError) as info:
        downloads.acquire("cid", "c" * 16)
    assert info.value.status == 429 and "at most 3 at a time" in info.value.message
    assert downloads.counts() == {"ann": 2, "bob": 1}
    assert downloads.downloading("a" * 16) and not downloads.downloading("d" * 16)
    downloads.release(first)
    downloads.release(first)  # twice changes nothing
    assert not downloads.downloading("a" * 16)
    downloads.acquire("ann", "a" * 16)  # the slot is back
    downloads.close()
    with pytest.raises(ApiError) as info:
        downloads.acquire("dan", "a" * 16)
    assert info.value.status == 503


def test_zip_download_threads_are_named_and_end_on_close():
    downloads = zips.ZipDownloads()
    name = downloads.executor.submit(lambda: threading.current_thread().name).result(5)
    assert name.startswith(zips.ZIP_THREAD_NAME)
    downloads.close()
    with pytest.raises(RuntimeError):
        downloads.executor.submit(lambda: None)  # a fresh executor would accept it
    # closed: no thread of ours is left running
    for thread in threading.enumerate():
        if thread.name.startswith(zips.ZIP_THREAD_NAME):
            thread.join(5)
            assert not thread.is_alive()


def _zip_of(tmp_path, names):
    def locate(relatives):
        return {rel: tmp_path / rel for rel in relatives if (tmp_path / rel).is_file()}

    return zips.ZipBody.of([(f"print/{n}", n) for n in names], locate)


def test_zip_body_holds_the_files_in_blocks(tmp_path):
    files = {f"2024-01-01/layer_{i}.jpg": os.urandom(300_000 + i) for i in range(5)}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    body = _zip_of(tmp_path, [*files, "2024-01-01/gone.jpg"])
    assert body is not None and body.missing == 1 and body.last_modified is not None
    blocks = []
    while block := body.read(256 * 1024):
        blocks.append(block)
    assert all(len(b) >= 256 * 1024 for b in blocks[:-1])
    data = b"".join(blocks)
    assert len(data) == body.size
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {n: archive.read(f"print/{n}") for n in files} == files


def test_zip_body_of_no_files_is_none(tmp_path):
    assert _zip_of(tmp_path, ["2024-01-01/gone.jpg"]) is None
    assert _zip_of(tmp_path, []) is None


def test_zip_body_reports_a_file_removed_or_changed_after_planning(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(os.urandom(200_000))
    body = _zip_of(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError):
        while body.read(64 * 1024):
            pass
    body.close()
    (tmp_path / "b.jpg").write_bytes(os.urandom(200_000))
    body = _zip_of(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "a.jpg").write_bytes(b"shorter")
    with pytest.raises(RuntimeError):
        while body.read():
            pass


def test_a_print_being_deleted_is_not_downloaded_and_the_other_way_round():
    downloads = zips.ZipDownloads()
    with downloads.deleting("a" * 16) as free:
        assert free
        with pytest.raises(ApiError) as info:
            downloads.acquire("ann", "a" * 16)
        assert info.value.status == 409
        downloads.release(downloads.acquire("ann", "b" * 16))
    slot = downloads.acquire("ann", "a" * 16)
    with downloads.deleting("a" * 16) as free:
        assert not free
    downloads.release(slot)
    with downloads.deleting("a" * 16) as free:
        assert free


# ---- settings errors shown to others --------------------------------------------------------
