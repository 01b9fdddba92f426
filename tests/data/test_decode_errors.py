"""A corrupt image is named in one line: at ``prepare`` (every image is decoded there) and, should one go bad
later, in training, also when DataLoader workers read the images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from datafixtures import truncate_image, write_waterbirds

from dro.data.verify import verify_images


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project on a Waterbirds fixture, small enough to train on in a second."""
    folder = write_waterbirds(tmp_path / "data" / "waterbirds")
    monkeypatch.chdir(tmp_path)

    def params(num_workers: int = 0) -> None:
        Path("params.yaml").write_text(yaml.safe_dump({
            "dataset": "waterbirds", "device": "cpu",
            "waterbirds": {"root": "data/waterbirds", "train": {
                "arch": "small_cnn", "pretrained": False, "image_size": 16, "batch_size": 8, "optimizer": "adam",
                "lr": 0.001, "epochs": 1, "num_workers": num_workers}},
            "models": {"real": {"stable_diffusion": "x", "bert": "x", "clip": "x"}},
        }))

    params()
    return folder, params


def _stage(module, monkeypatch, capsys) -> tuple[int, list[str]]:
    """Run a stage as its command line does; (exit status, stderr lines)."""
    monkeypatch.setattr(sys, "argv", [module.__name__])
    try:
        module.main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_truncated_jpeg_stops_prepare_with_one_line_naming_it(project, monkeypatch, capsys):
    from stages import prepare

    folder, _ = project
    bad = sorted(folder.rglob("*.jpg"))[3]
    truncate_image(bad)
    code, err = _stage(prepare, monkeypatch, capsys)
    errors = [line for line in err if line.startswith("error:")]  # progress lines share stderr (logging)
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0], err
    assert str(bad) in errors[0] and "1 of 32 images cannot be decoded" in errors[0] and "truncated" in errors[0]
    assert not Path("data/prepared/index.csv").exists()  # nothing half-verified for later stages


def test_decoding_is_cached_by_size_and_time(tmp_path):
    folder = write_waterbirds(tmp_path)
    files = sorted(folder.rglob("*.jpg"))
    cache = tmp_path / "cache.json"
    assert verify_images(files, "Waterbirds", cache) == len(files)
    assert verify_images(files, "Waterbirds", cache) == 0  # a rerun decodes nothing
    truncate_image(files[0])  # size and time change: decoded again, and found bad
    with pytest.raises(Exception, match="1 of 32 images cannot be decoded"):
        verify_images(files, "Waterbirds", cache)
    assert str(files[0]) not in json.loads(cache.read_text())["ok"]
    files[1].write_bytes(b"not an image at all")
    with pytest.raises(Exception, match="2 of 32"):
        verify_images(files, "Waterbirds", cache)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_image_going_bad_after_prepare_is_one_line_in_training(project, monkeypatch, capsys, num_workers):
    from stages import prepare, train_erm

    folder, params = project
    params(num_workers)
    assert _stage(prepare, monkeypatch, capsys)[0] == 0
    bad = sorted(folder.rglob("*.jpg"))[5]
    truncate_image(bad)
    code, err = _stage(train_erm, monkeypatch, capsys)
    message = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(message) == 1, err
    assert message[0].startswith(f"error: corrupt or unreadable image: {bad}") and "truncated" in message[0].lower()
    assert not any("Traceback" in line for line in err), err
