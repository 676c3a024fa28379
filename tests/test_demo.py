"""`nnunet-tavr demo --quick`: the whole pipeline end to end, its report, and a second run that reuses it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import bin_path
from nnunet_tavr.labels import DISPLAY_NAMES

TRAINER = "nnUNetTrainerFocalSR_quick"
STAGES = ["phantoms", "convert", "plan_and_preprocess", f"train {TRAINER}", f"predict {TRAINER}", "compare", "measure"]
#: The quick demo's test-set mean Dice must reach this (%). Measured over seeds 0, 1, 2 on the idle
#: 2-core machine (benchmarks/results/demo.txt): 70.5, 68.8, 71.0 (1,200 iterations). The floor,
#: above the issue's 50, leaves 14 points for thread scheduling and library versions and still fails
#: when training stops learning the small classes (the aorta and ventricle alone give < 30).
QUICK_DICE_FLOOR = 55.0


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
    # conversion: the chest-less subject (the last one) is dropped with its reason
    assert re.search(r"^\| s0019 \| 0 \| empty_mask \|", report, re.M)
    # comparison: a Dice and an IoU row per class, numbers that parse
    for name in DISPLAY_NAMES.values():
        for metric in ("Dice", "IoU"):
            row = re.search(rf"^\| {re.escape(name)} {metric} \| ([^|]+) \|", report, re.M)
            assert row, f"no {name} {metric} row"
            assert 0.0 <= float(row.group(1).strip().strip("*")) <= 100.0
    # measurements of a predicted case beside the reference and the phantom's truth
    area = re.search(r"^\| annulus area \| ([^|]+) \| ([0-9.]+) mm2 \| ([0-9.]+) mm2 \|", report, re.M)
    assert area, "annulus area row missing"
    reference, truth = float(area.group(2)), float(area.group(3))
    assert abs(reference - truth) / truth < 0.1  # derived reference labels on a 4 mm grid (2 % measured)
    # every figure the report links exists
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link
    # the summary leads the report: test Dice of the trainer, headline measurements, total time
    assert report.index("## Summary") < report.index("## Stages")
    test_dice = summary["summary"]["test_dice"][TRAINER]
    assert test_dice["n_cases"] == 3
    assert 100 * test_dice["mean"] >= QUICK_DICE_FLOOR, test_dice
    assert re.search(rf"^\| `{TRAINER}` \| {100 * test_dice['mean']:.1f} \|", report, re.M)
    measured = summary["summary"]["measurements"]
    assert set(measured) == {"annulus area_diameter", "aortic_root sinus_diameter", "aortic_root stj_diameter"}
    assert all(m["truth_mm"] > 10 for m in measured.values())
    assert f"Total time: **{summary['summary']['total_minutes']:.1f} min**" in report


@pytest.mark.slow
def test_second_run_reuses_finished_stages(demo_run):
    out, _ = demo_run
    second = _run_demo(out)
    for stage in STAGES[:5]:
        assert re.search(rf"\] {re.escape(stage)}: reused", second.stdout), stage
    summary = json.loads((out / "report.json").read_text())
    assert all(s["status"] == "reused" for s in summary["stages"][:5])


def test_summary_reads_compare_and_measure_outputs(tmp_path):
    """The summary's numbers are the comparison's test-set Dice and the measurement minus the truth;
    a measurement the prediction lacks is "missing", not zero."""
    from nnunet_tavr.demo_report import demo_summary, summary_markdown

    compare, measure = tmp_path / "compare", tmp_path / "measure" / "prediction"
    compare.mkdir()
    measure.mkdir(parents=True)
    per_class = {"aorta": {"A": {"mean": 0.95}}, "left_ventricle": {"A": {"mean": 0.91}}}
    (compare / "summary.json").write_text(json.dumps({"splits": {"test": {
        "trainers": ["A"], "n_common_cases": 3, "mean": {"Dice": {"A": 0.8}}, "per_class": {"Dice": per_class}}}}))
    (measure / "measurements.json").write_text(json.dumps({
        "annulus": {"area_diameter": {"value": 23.5, "unit": "mm"}, "label_area_diameter": {"value": 27.25, "unit": "mm"}},
        "aortic_root": {"missing": "no aortic root"}}))
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"annulus_area_diameter_mm": 22.6, "sinus_diameter_mm": 31.7, "stj_diameter_mm": 24.9}))
    summary = demo_summary(tmp_path / "compare", tmp_path / "measure", truth, ["A"], 125.0)
    assert summary["test_dice"]["A"] == {"mean": 0.8, "aorta": 0.95, "left_ventricle": 0.91, "n_cases": 3}
    assert summary["measurements"]["annulus area_diameter"]["error_mm"] == pytest.approx(0.9)
    assert summary["measurements"]["aortic_root sinus_diameter"]["predicted_mm"] is None
    text = "\n".join(summary_markdown(summary, "s0001"))
    assert "| `A` | 80.0 | 95.0 | 91.0 | 3 |" in text
    assert "| aortic root sinus diameter | missing | 31.7 | – |" in text
    assert "| annulus area diameter | 23.5 | 22.6 | +0.9 |" in text and "**2.1 min**" in text
    assert summary["measurements"]["annulus area_diameter"]["labels_only_mm"] == 27.25
    assert "from the labels alone its area-derived diameter is 27.2 mm" in text


@pytest.mark.parametrize("name", ["nnUNetTrainerFocalSR_demo", "nnUNetTrainerDiceCE_demo", "nnUNetTrainerFocalSR_quick",
                                  "nnUNetTrainerDiceCE_quick"])
def test_demo_trainers_are_thin_subclasses(name):
    """What the demo shows is the method: a demo trainer's loss, network and optimizer are its
    parent's; the classes it adds only set the schedule and the augmentation."""
    from nnunet_tavr.trainers.variants import demo_trainers, loss_trainers

    cls = getattr(demo_trainers, name)
    parent = getattr(loss_trainers, name.rsplit("_", 1)[0])
    assert issubclass(cls, parent)
    for hook in ("_build_loss", "build_network_architecture", "configure_optimizers"):
        assert getattr(cls, hook) is getattr(parent, hook), hook
    added = [c for c in cls.__mro__ if c not in parent.__mro__ and c is not cls]
    assert added and all(c.__module__.endswith(("schedules", "augmentation", "demo_trainers")) for c in added), added
    assert cls.num_iterations_per_epoch * cls.num_epochs >= 1200
