"""Make sure Waterbirds / CelebA are on disk: use what is there, download on request, else say where files go.

Nothing here touches the network unless ``download=True`` AND the files are missing. Both functions
return the dataset folder that the loaders' ``Record.source`` paths are relative to (pass it as
``root=`` to :func:`dro.data.write_prepared`).

Waterbirds is fetched with a small resumable downloader rather than torchvision's ``download_url``:
that helper always restarts from byte 0, and with no published checksum (Stanford publishes no md5
for this tarball) it treats ANY existing file as complete, so an interrupted 480 MB download would be
"verified" and then fail to extract. Here bytes go to ``<name>.part`` (resumed with an HTTP Range
request), the size is checked against Content-Length, the md5 is checked when one is given (with
torchvision's ``calculate_md5``), and only then is the file renamed into place. The archive is
extracted with tarfile's ``data`` filter (no member may land outside the destination) into a
temporary folder that is renamed into place only when complete.

CelebA is fetched by ``torchvision.datasets.CelebA(download=True)``, which downloads each file from
Google Drive through ``gdown`` and verifies its md5; files already complete are skipped on a rerun.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dro.data import celeba, waterbirds
from dro.data.base import DatasetError

_log = logging.getLogger(__name__)

USER_AGENT = "dexter-dro (torchvision-style dataset download)"
Opener = Callable[..., object]


def ensure_waterbirds(
    root: Path, download: bool, *, url: str = waterbirds.URL, md5: str | None = None,
    opener: Opener | None = None,
) -> Path:
    """The Waterbirds dataset folder under ``root`` (``root`` itself or ``root/waterbird_complete95_forest2water2``).

    Missing and ``download`` false: a :class:`DatasetError` saying where to put which files. Missing and
    ``download`` true: fetch the official tarball (resuming a previous partial download), extract, return.
    """
    root = Path(root)
    found = waterbirds.find_waterbirds_dir(root)
    if found is not None:
        return found
    if not download:
        raise DatasetError(f"Waterbirds not found under {root}: {waterbirds.where_to_put(root)}")
    archive = root / f"{waterbirds.FOLDER}.tar.gz"
    try:
        fetch(url, archive, md5=md5, opener=opener)
    except (urllib.error.URLError, OSError) as e:
        raise DatasetError(
            f"Waterbirds: download of {url} failed ({e}); without network, {waterbirds.where_to_put(root)} "
            f"(a partial download is resumed from {archive}.part next time)"
        ) from e
    extract_tar(archive, root, waterbirds.FOLDER)
    found = waterbirds.find_waterbirds_dir(root)
    if found is None:
        raise DatasetError(
            f"Waterbirds: {archive} did not contain {waterbirds.FOLDER}/{waterbirds.METADATA}; delete it and retry"
        )
    return found


def ensure_celeba(root: Path, download: bool) -> Path:
    """The CelebA folder under ``root`` (``root`` or ``root/celeba``); downloads through torchvision on request."""
    root = Path(root)
    found = celeba.find_celeba_dir(root)
    if found is not None:
        return found
    if not download:
        raise DatasetError(f"CelebA not found under {root}: {celeba.where_to_put(root)}")
    try:
        import gdown  # noqa: F401  (torchvision's CelebA download goes through it)
    except ImportError:
        raise DatasetError(
            "CelebA: celeba.download: true needs gdown (torchvision downloads CelebA from Google Drive with it): "
            f"run `pip install gdown`, or {celeba.where_to_put(root)}"
        ) from None
    from torchvision.datasets import CelebA

    _log.info(f"Downloading CelebA (about 1.4 GB) into {root / 'celeba'} with torchvision + gdown; each file's md5 "
              "is verified and complete files are skipped if you rerun after an interruption.")
    try:
        CelebA(root=str(root), split="all", target_type=[], download=True)
    except Exception as e:  # gdown raises its own error types (quota, HTML page instead of file, no network)
        raise DatasetError(
            f"CelebA: download through torchvision/gdown failed ({' '.join(str(e).split())}); Google Drive often "
            f"refuses with a daily quota error: retry later, or {celeba.where_to_put(root)}"
        ) from e
    return celeba.celeba_dir(root)


def fetch(
    url: str, dest: Path, *, md5: str | None = None, opener: Opener | None = None, chunk_size: int = 1 << 20
) -> Path:
    """Download ``url`` to ``dest`` resumably; ``dest`` only ever appears complete (and md5-checked if given).

    ``opener`` defaults to ``urllib.request.urlopen`` (tests pass a fake; nothing in the tests uses the network).
    """
    from torchvision.datasets.utils import calculate_md5

    dest = Path(dest)
    if dest.is_file() and (md5 is None or calculate_md5(dest) == md5):
        return dest
    opener = opener or urllib.request.urlopen
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):  # a second attempt only if the server rejected our resume offset
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = opener(urllib.request.Request(url, headers=headers), timeout=60)
        except urllib.error.HTTPError as e:
            if e.code == 416 and attempt == 0:  # range not satisfiable: the .part is stale or complete; restart
                part.unlink()
                continue
            raise
        with response:
            status = getattr(response, "status", 200)
            if have and status != 206:  # server ignored the Range header: start over
                have = 0
            length = response.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            _copy(response, part, "ab" if have else "wb", chunk_size, expected, dest.name)
        size = part.stat().st_size
        if expected is not None and size != expected:
            raise OSError(f"incomplete download: {size} of {expected} bytes (rerun to resume)")
        break
    if md5 is not None:
        actual = calculate_md5(part)
        if actual != md5:
            part.unlink()
            raise DatasetError(f"download of {url} has md5 {actual}, expected {md5}; the corrupt file was deleted")
    os.replace(part, dest)
    return dest


def _copy(response, part: Path, mode: str, chunk_size: int, total: int | None, name: str) -> None:
    from common.progress import progress_bar

    initial = part.stat().st_size if mode == "ab" and part.exists() else 0
    with open(part, mode) as f, progress_bar(total=total, initial=initial, unit="B", unit_scale=True,
                                             desc=name) as bar:
        while chunk := response.read(chunk_size):
            f.write(chunk)
            bar.update(len(chunk))


def extract_tar(archive: Path, root: Path, folder: str) -> Path:
    """Extract ``archive`` and move its top-level ``folder`` to ``root/folder`` only once extraction finished."""
    staging = root / f".{folder}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, '..' and links leaving staging
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"cannot extract {archive} ({e}); delete it and download again") from e
    if not (staging / folder).is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"{archive} has no top-level folder {folder}/; delete it and download again")
    target = root / folder
    if target.exists():  # never delete a user's folder: it exists but find_waterbirds_dir found no metadata.csv
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"{target} exists but is incomplete (no metadata.csv); move it away and retry")
    os.replace(staging / folder, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
