"""Download helpers: never touch the network in tests; fake HTTP responses exercise resume and checks."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.error
from pathlib import Path

import pytest
from datafixtures import WATERBIRDS_COUNTS, write_celeba, write_waterbirds

from dro.data import DatasetError
from dro.data.download import ensure_celeba, ensure_waterbirds, fetch
from dro.data.waterbirds import FOLDER, URL, load_waterbirds


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int, fail_after: int | None = None) -> None:
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection dropped")
        return super().read(n if self.fail_after is None else min(n, self.fail_after - self.tell()))


class FakeServer:
    """Serves one payload, honouring ``Range: bytes=N-``; can drop the connection after some bytes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.requests: list[dict] = []
        self.fail_after: int | None = None

    def __call__(self, request, timeout=None):
        headers = dict(request.header_items())
        self.requests.append(headers)
        start = int(headers["Range"].removeprefix("bytes=").rstrip("-")) if "Range" in headers else 0
        body = self.payload[start:]
        response = FakeResponse(body, 206 if start else 200, self.fail_after)
        self.fail_after = None
        return response


def _waterbirds_tarball(tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    write_waterbirds(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / FOLDER, arcname=FOLDER)
    return buf.getvalue()


def test_existing_waterbirds_is_used_without_network(waterbirds_parent: Path, no_network) -> None:
    assert ensure_waterbirds(waterbirds_parent, download=True) == waterbirds_parent / FOLDER
    assert ensure_waterbirds(waterbirds_parent / FOLDER, download=False) == waterbirds_parent / FOLDER
    assert no_network() == 0


def test_missing_waterbirds_without_download_says_where_and_does_not_download(tmp_path: Path, no_network) -> None:
    with pytest.raises(DatasetError) as err:
        ensure_waterbirds(tmp_path / "wb", download=False)
    msg = str(err.value)
    assert URL in msg
    assert str(tmp_path / "wb" / FOLDER / "metadata.csv") in msg
    assert "waterbirds.download: true" in msg
    assert no_network() == 0
    assert not (tmp_path / "wb").exists()


def test_download_resumes_after_a_dropped_connection_and_checks_md5(tmp_path: Path) -> None:
    payload = _waterbirds_tarball(tmp_path)
    md5 = hashlib.md5(payload).hexdigest()
    server = FakeServer(payload)
    server.fail_after = len(payload) // 2
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match=r"download of .* failed .*resumed from .*\.part"):
        ensure_waterbirds(root, download=True, md5=md5, opener=server)
    part = root / f"{FOLDER}.tar.gz.part"
    assert part.stat().st_size == len(payload) // 2
    assert not (root / f"{FOLDER}.tar.gz").exists()  # never a truncated file under the final name

    folder = ensure_waterbirds(root, download=True, md5=md5, opener=server)
    assert server.requests[-1]["Range"] == f"bytes={len(payload) // 2}-"
    assert folder == root / FOLDER
    assert len(load_waterbirds(root)[1]) == sum(WATERBIRDS_COUNTS.values())
    assert not part.exists()


def test_wrong_md5_is_refused_and_the_file_deleted(tmp_path: Path) -> None:
    server = FakeServer(b"not the real archive")
    with pytest.raises(DatasetError, match="expected 0123"):
        fetch("https://example.invalid/x.tar.gz", tmp_path / "x.tar.gz", md5="0123", opener=server)
    assert not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "x.tar.gz.part").exists()


def test_no_network_gives_the_manual_instructions(tmp_path: Path) -> None:
    def offline(request, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DatasetError) as err:
        ensure_waterbirds(tmp_path, download=True, opener=offline)
    msg = str(err.value)
    assert "name resolution" in msg and URL in msg and f"tar -xzf {FOLDER}.tar.gz" in msg


def test_archive_members_escaping_the_destination_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{FOLDER}/../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DatasetError, match="cannot extract"):
        ensure_waterbirds(tmp_path / "root", download=True, opener=FakeServer(buf.getvalue()))
    assert not (tmp_path / "evil.txt").exists()


def test_existing_celeba_is_used(tmp_path: Path, no_network) -> None:
    folder = write_celeba(tmp_path)
    assert ensure_celeba(tmp_path, download=True) == folder
    assert no_network() == 0


def test_missing_celeba_without_download_says_where(tmp_path: Path, no_network) -> None:
    with pytest.raises(DatasetError) as err:
        ensure_celeba(tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "celeba") in msg and "list_attr_celeba.txt" in msg and "img_align_celeba/" in msg
    assert no_network() == 0


def test_celeba_download_without_gdown_says_how_to_install(tmp_path: Path, monkeypatch, no_network) -> None:
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(DatasetError, match="pip install gdown"):
        ensure_celeba(tmp_path, download=True)
    assert no_network() == 0
