"""`nnunet-tavr demo --quick`: the whole pipeline end to end, its report, and a second run that reuses it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import bin_path
from nnunet_tavr.labels import DISPLAY_NAMES

STAGES = [
    "phantoms", "convert", "plan_and_preprocess",
    "train nnUNetTrainerFocalSR_smoke", "train nnUNetTrainerDiceCE_smoke",
    "predict nnUNetTrainerFocalSR_smoke", "predict nnUNetTrainerDiceCE_smoke",
    "compare", "measure",
]


def _run_demo(out):
    proc = subprocess.run(
        [bin_path("nnunet-tavr"), "demo", "-o", str(out), "--quick", "--device", "cpu"],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    first = _run_demo(out)
    return out, first


@pytest.mark.slow
def test_report_shows_every_stage_with_numbers(demo_run):
    out, proc = demo_run
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/{len(STAGES)}] {stage}: ran" in proc.stdout
    report = (out / "report.md").read_text()
    rows = {m.group(1): m for m in re.finditer(r"^\| \d+ \| ([^|]+?) \| (ran|reused) \| ([0-9.]+) \|", report, re.M)}
    assert list(rows) == STAGES
    assert all(float(m.group(3)) >= 0 for m in rows.values())
    summary = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in summary["stages"]] == STAGES and summary["total_seconds"] > 0
    # conversion: the chest-less subject is dropped with its reason
    assert re.search(r"^\| s0007 \| 0 \| empty_mask \|", report, re.M)
    # comparison: a Dice and an IoU row per class, numbers that parse, for both trainers
    for name in DISPLAY_NAMES.values():
        for metric in ("Dice", "IoU"):
            row = re.search(rf"^\| {re.escape(name)} {metric} \| ([^|]+) \| ([^|]+) \|", report, re.M)
            assert row, f"no {name} {metric} row"
            for cell in row.groups():
                assert 0.0 <= float(cell.strip().strip("*")) <= 100.0
    # measurements of a predicted case beside the reference and the phantom's truth
    area = re.search(r"^\| annulus area \| ([^|]+) \| ([0-9.]+) mm2 \| ([0-9.]+) mm2 \|", report, re.M)
    assert area, "annulus area row missing"
    reference, truth = float(area.group(2)), float(area.group(3))
    assert abs(reference - truth) / truth < 0.25  # derived reference labels on a 3 mm grid
    # every figure the report links exists
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link
    assert "few minutes of training" in report


@pytest.mark.slow
def test_second_run_reuses_finished_stages(demo_run):
    out, _ = demo_run
    second = _run_demo(out)
    for stage in STAGES[:7]:
        assert re.search(rf"\] {re.escape(stage)}: reused", second.stdout), stage
    summary = json.loads((out / "report.json").read_text())
    assert all(s["status"] == "reused" for s in summary["stages"][:7])
