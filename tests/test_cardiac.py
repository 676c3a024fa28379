"""``nnunet-tavr cardiac`` on small synthetic label maps whose volumes, LV mass and Dice are known:
volumes only, with references (tables, figures, report), small n, and bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.io import Geometry, write_array, write_json

SPACING = (2.0, 1.0, 1.0)  # mm (z, y, x): one voxel is 2 mm^3 = 0.002 ml
CLASSES = {"background": 0, "left_atrium": 1, "left_ventricle_cavity": 2, "left_ventricle_myocardium": 3}
VOXEL_ML = 0.002


def _geometry(shape=(20, 30, 30), spacing=SPACING) -> Geometry:
    return Geometry(shape=shape, spacing=spacing, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def _labels(la: int, lv: int, myo: int, shape=(20, 30, 30)) -> np.ndarray:
    """A label map with exactly ``la``, ``lv`` and ``myo`` voxels of classes 1, 2, 3 (in that
    order along the flattened array)."""
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    flat[:la] = 1
    flat[la:la + lv] = 2
    flat[la + lv:la + lv + myo] = 3
    return flat.reshape(shape)


def _write(folder: Path, cases: dict[str, np.ndarray], geometry=None, dataset_json=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for case, labels in cases.items():
        write_array(labels, geometry or _geometry(labels.shape), folder / f"{case}.nii.gz")
    if dataset_json:
        write_json({"labels": CLASSES, "file_ending": ".nii.gz"}, folder / "dataset.json")
    return folder


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _run(*args) -> Result:
    """``nnunet-tavr cardiac ARGS`` in this process (the CLI's own entry point and error handling)."""
    from nnunet_tavr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["cardiac", *map(str, args), "--quiet"])
        except SystemExit as exc:  # argparse refusing an option
            code = exc.code
    return Result(code, out.getvalue(), err.getvalue())


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


#: Reference and prediction voxel counts (LA, LVC, LVM) of five cases.
REF = {"c1": (1000, 2000, 3000), "c2": (1500, 2500, 3200), "c3": (1200, 1800, 2900), "c4": (900, 2100, 3100), "c5": (1100, 2300, 3500)}
PRED = {"c1": (1050, 1900, 3100), "c2": (1500, 2600, 3000), "c3": (1300, 1800, 2950), "c4": (800, 2000, 3300), "c5": (1000, 2400, 3400)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cardiac")
    ref = _write(root / "ref", {c: _labels(*v) for c, v in REF.items()})
    pred = _write(root / "pred", {c: _labels(*v) for c, v in PRED.items()}, dataset_json=False)
    return root, ref, pred


def test_volumes_and_lv_mass_of_one_folder(folders, tmp_path):
    _, ref, _ = folders
    proc = _run(ref, "-o", tmp_path / "out", "--density", "1.1")
    assert proc.returncode == 0, proc.stderr
    rows = {r["case"]: r for r in _rows(tmp_path / "out" / "volumes.csv")}
    for case, (la, lv, myo) in REF.items():
        assert float(rows[case]["left_atrium_ml"]) == pytest.approx(la * VOXEL_ML)
        assert float(rows[case]["left_ventricle_cavity_ml"]) == pytest.approx(lv * VOXEL_ML)
        assert float(rows[case]["lv_mass_g"]) == pytest.approx(myo * VOXEL_ML * 1.1)
    assert not (tmp_path / "out" / "agreement.csv").exists()
    assert "references: none" in (tmp_path / "out" / "report.md").read_text()


def test_agreement_against_references(folders, tmp_path):
    from nnunet_tavr.cardiac.agreement import bland_altman, pearson

    _, ref, pred = folders
    out = tmp_path / "out"
    proc = _run(pred, "--reference", ref, "-o", out)
    assert proc.returncode == 0, proc.stderr
    rows = {r["quantity"]: r for r in _rows(out / "agreement.csv")}
    assert set(rows) == {"left_atrium", "left_ventricle_cavity", "left_ventricle_myocardium", "lv_mass"}
    cases = sorted(REF)
    for i, quantity in enumerate(["left_atrium", "left_ventricle_cavity", "left_ventricle_myocardium"]):
        r = np.array([REF[c][i] for c in cases]) * VOXEL_ML
        p = np.array([PRED[c][i] for c in cases]) * VOXEL_ML
        ba, corr = bland_altman(r, p), pearson(r, p)
        row = rows[quantity]
        assert float(row["bias"]) == pytest.approx(np.mean(p - r), abs=1e-4)
        assert float(row["upper_limit"]) == pytest.approx(ba.upper, abs=1e-4)
        assert float(row["upper_ci_high"]) == pytest.approx(ba.upper_ci[1], abs=1e-4)
        assert float(row["pearson_r"]) == pytest.approx(corr.r, abs=1e-4)
        assert int(row["n"]) == 5
    myo = np.array([PRED[c][2] - REF[c][2] for c in cases]) * VOXEL_ML
    assert float(rows["lv_mass"]["bias"]) == pytest.approx(1.05 * myo.mean(), abs=1e-4)
    # Dice of nested masks laid out along the flattened array: overlap = min of the two runs
    dice = {(r["case"], r["class"]): float(r["dice"]) for r in _rows(out / "dice.csv")}
    la_r, la_p = REF["c1"][0], PRED["c1"][0]
    assert dice[("c1", "left_atrium")] == pytest.approx(2 * min(la_r, la_p) / (la_r + la_p), abs=1e-4)
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["agreement_left_atrium.png", "agreement_left_ventricle_cavity.png",
                       "agreement_left_ventricle_myocardium.png", "agreement_lv_mass.png", "dice.png"]
    report = (out / "report.md").read_text()
    assert "## Agreement" in report and "## Dice" in report and "seed 004" in report
    assert json.loads((out / "agreement.json").read_text())["agreement"][0]["n"] == 5


def test_two_cases_print_n_too_small(folders, tmp_path):
    root, ref, _ = folders
    pred = _write(root / "pred2", {c: _labels(*PRED[c]) for c in ("c1", "c2")}, dataset_json=False)
    proc = _run(pred, "--reference", ref, "-o", tmp_path / "out")
    assert proc.returncode == 1  # three references have no prediction: listed, exit 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "n too small" in report and "reference without segmentation: c3" in report
    row = _rows(tmp_path / "out" / "agreement.csv")[0]
    assert row["lower_limit"] == "" and row["pearson_r"] == "" and "n too small" in row["notes"]


def test_bad_cases_are_listed_and_the_rest_measured(folders, tmp_path):
    root, ref, _ = folders
    cases = {c: _labels(*PRED[c]) for c in ("c1", "c2", "c3", "c4")}
    cases["c2"][0, 0, 0] = 9  # not a class
    pred = _write(root / "pred3", cases, dataset_json=False)
    write_array(_labels(*PRED["c4"], shape=(20, 30, 31)), _geometry((20, 30, 31)), pred / "c4.nii.gz")  # off the grid
    proc = _run(pred, "--reference", ref, "-o", tmp_path / "out")
    assert proc.returncode == 1
    assert "c2" in proc.stdout and "label values [9]" in proc.stdout and "c4" in proc.stdout
    assert {r["case"] for r in _rows(tmp_path / "out" / "volumes.csv")} == {"c1", "c3"}


def test_usage_errors(folders, tmp_path):
    _, ref, pred = folders
    assert _run(pred, "--reference", ref, "-o", ref / "out").returncode == 2  # output inside an input folder
    assert _run(pred, "-o", pred).returncode == 2
    assert _run(tmp_path / "missing", "-o", tmp_path / "o").returncode == 2
    proc = _run(pred, "--reference", ref, "-o", tmp_path / "o", "--confidence", "1.5")
    assert proc.returncode == 2 and "confidence" in proc.stderr
    other = _write(tmp_path / "other", {"x1": _labels(1, 1, 1)})
    proc = _run(pred, "--reference", other, "-o", tmp_path / "o2")
    assert proc.returncode == 2 and "no case" in proc.stderr
