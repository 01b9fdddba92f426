"""What a newcomer meets around ``dvc repro``: progress in logs, per-class stages that stay cached, a small
stable set of DVC metrics, plots that render offline, pinned installs, and a one-line device error."""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def _declared(stage: dict, kind: str) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in stage.get(kind, [])]


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


def test_explain_stage_shows_progress():
    assert "--no-progress" not in STAGES["explain"]["cmd"]


def test_progress_in_a_log_is_whole_lines_at_most_one_per_interval(monkeypatch):
    from common.progress import progress_bar

    monkeypatch.setenv("DEXTER_PROGRESS_INTERVAL", "0.05")
    log = io.StringIO()  # not a terminal
    bar = progress_bar(desc="dexter", unit="step", stream=log)
    for i in range(12):
        time.sleep(0.01)
        bar.update(1)
        bar.set_postfix_str(f"loss {i}")  # forces a redraw every step: must not become a line per step
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and 1 <= len(lines) < 12, text
    assert all(line.startswith("dexter: ") for line in lines)
    assert lines[-1].startswith("dexter: 12step"), "the final state is always written"


def test_a_bar_that_clears_itself_or_finishes_fast_leaves_no_line(monkeypatch):
    from common.progress import progress_bar

    monkeypatch.setenv("DEXTER_PROGRESS_INTERVAL", "30")
    log = io.StringIO()
    for _ in progress_bar(range(100), desc="fast", stream=log):
        pass
    monkeypatch.setenv("DEXTER_PROGRESS_INTERVAL", "0")
    bar = progress_bar(total=3, desc="epoch 1/2", leave=False, stream=log)
    bar.update(3)
    bar.close()
    assert "fast" not in log.getvalue()
    assert log.getvalue().count("\n") == log.getvalue().count("epoch 1/2") and "\r" not in log.getvalue()


def test_training_prints_batch_progress_within_an_epoch(monkeypatch, capsys, tmp_path):
    import numpy as np
    import torch

    from dro.sources import TensorSource
    from dro.train import SplitData, TrainConfig, train

    monkeypatch.setenv("DEXTER_PROGRESS_INTERVAL", "0")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(64, 4)).astype(np.float32))
    y = rng.integers(0, 2, 64)

    def slow_batch(epoch, step):
        time.sleep(0.002)

    cfg = TrainConfig(method="erm", epochs=2, batch_size=8, lr=0.1, seed=0, optimizer="sgd")
    train(torch.nn.Linear(4, 2), SplitData(TensorSource(x), y), SplitData(TensorSource(x), y), cfg,
          tmp_path, log=print, on_batch=slow_batch)
    err = capsys.readouterr().err
    assert re.search(r"epoch 1/2: +\d+%.*\| \d/8 ", err), err
    assert "\r" not in err


def test_stage_output_reaches_a_log_line_by_line():
    """stdout of a stage is line-buffered even into a pipe (else nothing shows until the stage ends)."""
    code = ("import time\nfrom stages.common import stage_main\n"
            "@stage_main\ndef main():\n    print('first', flush=False)\n    time.sleep(3)\nmain()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
    start = time.monotonic()
    first = proc.stdout.readline()
    waited = time.monotonic() - start
    proc.wait(timeout=30)
    assert first.strip() == "first" and waited < 2.5, f"first line after {waited:.1f}s"


# ---------------------------------------------------------------------------------------------
# The explain stage
# ---------------------------------------------------------------------------------------------


def test_explain_stage_depends_on_every_dexter_setting_and_the_launch():
    """Key by key (the reason stage's whole-section dependency would rerun explain for nothing), plus
    ``processes`` and ``torchrun``: a changed launch runs the stage again (the keywords stay the same)."""
    from stages.params.dexter import DexterSection

    params = STAGES["explain"]["params"]
    assert "dexter" not in params and {"processes", "torchrun"} <= set(params)
    assert {"stages/launch.py", "dexter/shards.py"} <= set(STAGES["explain"]["deps"])
    listed = {p.removeprefix("dexter.") for p in params if p.startswith("dexter.")}
    assert listed == set(DexterSection.model_fields), "dvc.yaml explain params out of date"
    in_file = yaml.safe_load((REPO / "params.yaml").read_text())["dexter"]
    missing = listed - set(in_file)
    assert not missing, f"params.yaml must spell out dexter.{sorted(missing)} (DVC fails on a missing key)"


def test_every_param_a_stage_lists_is_spelled_out_in_params_yaml():
    """DVC stops a stage whose listed param key is absent from params.yaml ("Parameters ... are missing"),
    even when the schema has a default for it."""
    in_file = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in STAGES.items():
        body = stage.get("do", stage)
        for key in _declared(body, "params"):
            node = in_file
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: params.yaml lacks {key}"
                node = node[part]


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_the_only_dvc_metrics_file_is_the_summary():
    metrics = [m for stage in STAGES.values() for m in _declared(stage.get("do", stage), "metrics")]
    assert metrics == ["metrics/summary.json"]
    report = STAGES["report"]
    assert {"results/metrics.json", "metrics/labelling.json"} <= set(report["deps"])


def _results(methods: dict[str, tuple[float, float]], groups: list[str]) -> dict:
    return {"methods": {m: {"worst_group_acc": wg, "avg_acc": avg, "group_acc": {g: avg for g in groups}}
                        for m, (wg, avg) in methods.items()}}


def test_summary_metric_names_do_not_depend_on_dataset_classes_or_attributes():
    from dro.report import summary_metrics

    def flat(d: dict, prefix: str = "") -> set[str]:
        return {k for key, v in d.items()
                for k in (flat(v, f"{prefix}{key}.") if isinstance(v, dict) else {f"{prefix}{key}"})}

    three = {"erm": (0.1, 0.6), "groupdro_oracle": (0.9, 0.95), "dro_dexter": (0.85, 0.9)}
    world = summary_metrics(_results(three, ["circle|background=water", "circle|background=land"]), {
        "train": {"accuracy": 0.9, "per_class": {"circle": {"f1_conflicting": 1.0},
                                                 "square": {"f1_conflicting": 0.5}}}})
    birds = summary_metrics(_results(three, ["landbird|place=land", "waterbird|place=water"]), {
        "train": {"accuracy": None, "per_class": {"landbird": {"f1_conflicting": None}}}})
    assert flat(world) == flat(birds) == {
        f"{m}.test/{k}" for m in three for k in ("worst_group_acc", "avg_acc")
    } | {"labelling.train/conflicting_f1", "labelling.train/accuracy"}
    assert world["labelling"]["train/conflicting_f1"] == pytest.approx(0.75)
    assert birds["labelling"] == {"train/conflicting_f1": None, "train/accuracy": None}
    assert world["dro_dexter"] == {"test/worst_group_acc": 0.85, "test/avg_acc": 0.9}


# ---------------------------------------------------------------------------------------------
# Offline plots
# ---------------------------------------------------------------------------------------------


def _template() -> Path:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc" / "config")
    return REPO / ".dvc" / cfg["plots"]["html_template"].strip()


def test_plots_template_is_configured_and_carries_vega_inline():
    page = _template().read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC fills {scripts} with CDN links
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    scripts = re.findall(r"<script>/\* (\S+) \*/\n(.*?)\n    </script>", page, re.S)
    assert [name.split("@")[0] for name, _ in scripts] == ["vega", "vega-lite", "vega-embed"]
    for name, js in scripts:  # the inlined code is what the header says (no hand edits)
        assert f"{name} " in page and hashlib.sha256(js.encode()).hexdigest() in page


def test_dvc_plots_page_loads_no_script_from_the_network(tmp_path):
    from dvc_render import render_html
    from dvc_render.vega import VegaRenderer

    renderer = VegaRenderer([{"epoch": 1, "erm": 0.5, "rev": "workspace"}], "results/curves.csv",
                            x="epoch", y="erm")
    out = render_html([renderer], tmp_path / "index.html", html_template=_template())
    page = Path(out).read_text(encoding="utf-8")
    assert "vegaEmbed('#" in page
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I), "a script is loaded from elsewhere"
    assert "cdn.jsdelivr" not in page


# ---------------------------------------------------------------------------------------------
# Installs
# ---------------------------------------------------------------------------------------------


def test_package_states_ranges_and_constraints_pin_them():
    import tomllib

    from packaging.requirements import Requirement

    deps = [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    assert not [str(d) for d in deps if any(s.operator == "==" for s in d.specifier)], "exact pins belong in constraints"
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    for d in deps:
        version = pins.get(d.name.lower().replace("_", "-"))
        assert version is not None, f"{d.name} is not pinned in constraints.txt"
        assert d.specifier.contains(version), f"constraints.txt pins {d.name}=={version}, outside {d.specifier}"
    assert "-c constraints.txt" in (REPO / "setup.sh").read_text()


# ---------------------------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ("cuda", "no CUDA device is available"),
    ("cuda:1", "no CUDA device is available"),
    ("gpu", "'gpu' is not a device"),
])
def test_unusable_device_is_a_stage_input_error(monkeypatch, spec, message):
    import torch

    from common.device import DeviceError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=message):
        resolve_device(spec)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == "cpu"


def test_cuda_in_params_without_a_gpu_is_one_line_from_a_stage(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train_erm", "--params", str(tmp_path / "params.yaml"),
         "--prepared", str(tmp_path / "none"), "--out", str(tmp_path / "erm")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: device: 'cuda' asked for, but no CUDA device is available (use 'auto' or 'cpu')"]


def test_plots_page_declares_utf8_where_browsers_look_for_it():
    """Browsers read the charset from the first 1024 bytes only; declared later (after the licence comment),
    the page was decoded as windows-1252 and Vega's ellipsis '…' showed as 'â€¦' on the bar labels."""
    head = _template().read_bytes()[:1024]
    assert b'<meta charset="utf-8">' in head


def test_group_accuracy_bars_get_one_colour_per_method_and_whole_labels():
    from dvc_render.vega import VegaRenderer

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    props = next(p["results/group_acc.csv"] for p in stages["retrain"]["plots"] if "results/group_acc.csv" in p)
    rows = [{"bar": f"{m}: circle|color=red,background=water", "method": m, "group": "circle|color=red,background=water",
             "accuracy": "0.5", "rev": "workspace"} for m in ("erm", "dro_dexter")]
    renderer = VegaRenderer(rows, "results/group_acc.csv", template_dir=str(REPO / ".dvc" / "plots"),
                            **{k: v for k, v in props.items() if k != "cache"})
    spec = renderer.get_filled_template()
    spec = json.loads(spec) if isinstance(spec, str) else spec
    assert spec["encoding"]["color"]["field"] == "method"
    assert spec["encoding"]["y"]["field"] == "bar" and spec["encoding"]["y"]["axis"]["labelLimit"] == 0


def test_validation_curves_get_one_colour_per_method():
    template = json.loads((REPO / ".dvc" / "plots" / f"{DVC_YAML['plots'][0]['validation_selection_score']['template']}.json")
                          .read_text())
    assert template["encoding"]["color"]["field"] == "field"  # DVC's column name of each y of a multi-y plot
