"""The fault suite: every command of the CLI run as a careless or hostile user would.

Each case asserts the exit status, a message that names the file or the option, no traceback
(an unexpected exception fails the test), inputs byte-identical, and no file created, changed or
removed outside the output folder: the whole sandbox is listed before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.cli import main as cli
from nnunet_tavr.io import Geometry, read_array, write_array

SHAPE, SPACING = (96, 80, 80), 3.0


# ----------------------------------------------------------------------------------------------
# the sandbox


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Inputs of every command: three phantom subjects (s0002 chest-less), a derived label map, a
    v1 multilabel file, a small nnU-Net tree with one trainer's validation predictions."""
    from nnunet_tavr.phantom import make_subject, write_dataset
    from nnunet_tavr.totalseg import TASKS

    root = tmp_path_factory.mktemp("template")
    data = root / "data"
    write_dataset(data / "ts", 3, seed=1, shape=SHAPE, spacing=SPACING, no_heart=[2], progress=False)
    ph = make_subject(100003, shape=SHAPE, spacing=SPACING)
    write_array(ph.labels, ph.geometry, data / "labels.nii.gz")
    ids = TASKS["total_v1"].ids
    ml = np.zeros(SHAPE, np.uint8)
    for name in ("aorta", "heart_ventricle_left", "iliac_artery_left", "iliac_artery_right"):
        ml[ph.masks[name]] = ids[name]
    write_array(ml, ph.geometry, data / "total_v1.nii.gz")
    # a segmentation whose header says 1e6 mm voxels, and one with 300 mm between slices
    small = np.zeros((4, 6, 6), np.uint8)
    write_array(small, Geometry((4, 6, 6), (1e6, 1.0, 1.0), (0.0,) * 3, tuple(np.eye(3).ravel())), data / "huge_spacing.nii.gz")
    write_array(small, Geometry((4, 6, 6), (300.0, 0.8, 0.8), (0.0,) * 3, tuple(np.eye(3).ravel())), data / "thick.nii.gz")
    # nnU-Net tree: Dataset123_Toy, trainer TrA, fold 0 validation = references
    name, meta = "Dataset123_Toy", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "aorta": 1}, "numTraining": 2, "file_ending": ".nii.gz"}
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2:6, 2:6, 2:6] = 1
    geo = Geometry((8, 8, 8), (1.0, 1.0, 1.0), (0.0,) * 3, tuple(np.eye(3).ravel()))
    for kind in ("raw", "pre"):
        (data / "nn" / kind / name).mkdir(parents=True)
        (data / "nn" / kind / name / "dataset.json").write_text(json.dumps(meta))
    (data / "nn" / "pre" / name / "splits_final.json").write_text(json.dumps([{"train": ["b"], "val": ["a"]}]))
    for case in ("a", "b"):
        write_array(seg, geo, data / "nn" / "pre" / name / "gt_segmentations" / f"{case}.nii.gz")
    write_array(seg, geo, data / "nn" / "res" / name / "TrA__nnUNetPlans__3d_fullres" / "fold_0" / "validation" / "a.nii.gz")
    write_array(seg, geo, data / "preds" / "a.nii.gz")
    return root


@pytest.fixture
def sandbox(template, tmp_path) -> Path:
    """A fresh copy of the template per test; ``sandbox/out`` is where outputs may go."""
    root = tmp_path / "sandbox"
    shutil.copytree(template, root, symlinks=True)
    (root / "out").mkdir()
    return root


def listing(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file and folder under ``root`` (outside ``skip``): path -> content hash or "dir"."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() and not path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "link"
    return out


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """One command in-process; argparse's exits count as return codes."""
    capsys.readouterr()
    try:
        code = cli([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def hostile(sandbox: Path, argv: list[str], capsys, code: int, *mentions: str, allowed: Path | None = None):
    """Run ``argv`` (``{S}`` = the sandbox) and check the outcome; returns stderr."""
    allowed = allowed if allowed is not None else sandbox / "out"
    before = listing(sandbox, skip=allowed)
    argv = [a.replace("{S}", str(sandbox)) if isinstance(a, str) else a for a in argv]
    rc, out, err = run(argv, capsys)
    assert rc == code, f"{argv}: exit {rc}, expected {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in err + out
    text = (err + out).lower()
    for mention in mentions:
        assert mention.replace("{S}", str(sandbox)).lower() in text, f"{argv}: {mention!r} not in the message:\n{err}"
    assert "np.float64" not in err  # numbers print as numbers
    assert listing(sandbox, skip=allowed) == before, f"{argv} changed files outside {allowed}"
    return err


S = "{S}"
SUBJ = f"{S}/data/ts/s0000"
AORTA = f"{SUBJ}/segmentations/aorta.nii.gz"


# ----------------------------------------------------------------------------------------------
# derive: outputs that are inputs, links to inputs, folders, bad names, bad options


@pytest.mark.parametrize("output", [AORTA, f"{SUBJ}/ct.nii.gz", f"{SUBJ}/new.nii.gz"])
def test_derive_never_writes_its_inputs(sandbox, capsys, output):
    hostile(sandbox, ["derive", SUBJ, "-o", output], capsys, 2, output.replace(S, str(sandbox)))


def test_derive_refuses_a_link_or_a_hard_link_to_an_input(sandbox, capsys):
    link, hard = sandbox / "out" / "link.nii.gz", sandbox / "out" / "hard.nii.gz"
    link.symlink_to(sandbox / "data/ts/s0000/segmentations/aorta.nii.gz")
    os.link(sandbox / "data/ts/s0000/ct.nii.gz", hard)
    for path in (link, hard):
        hostile(sandbox, ["derive", SUBJ, "-o", path], capsys, 2, "input", allowed=sandbox / "nowhere")


def test_derive_excluded_case_keeps_a_ct_named_as_output(sandbox, capsys):
    """The chest-less case is excluded; -o naming its own CT is refused before anything is done."""
    subject = f"{S}/data/ts/s0002"
    hostile(sandbox, ["derive", subject, "-o", f"{subject}/ct.nii.gz"], capsys, 2, "ct.nii.gz")


@pytest.mark.parametrize("output, mention", [
    ("{S}/out", "is a folder"),
    ("{S}/out/labels", "must end with"),
    ("{S}/data/labels.nii.gz/x.nii.gz", "is a file"),
])
def test_derive_output_path_problems(sandbox, capsys, output, mention):
    hostile(sandbox, ["derive", SUBJ, "-o", output], capsys, 2, mention)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions, so a read-only folder cannot be simulated")
def test_derive_read_only_output_folder(sandbox, capsys):
    ro = sandbox / "out" / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        hostile(sandbox, ["derive", SUBJ, "-o", ro / "l.nii.gz"], capsys, 2, "permission")
    finally:
        ro.chmod(0o700)


def test_derive_read_only_output_folder_as_root_is_checked_by_access(sandbox, capsys, monkeypatch):
    """Where the suite runs as root (CI containers), ``os.access`` decides: simulate its answer."""
    ro = sandbox / "out" / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    hostile(sandbox, ["derive", SUBJ, "-o", ro / "l.nii.gz"], capsys, 2, "no permission", str(ro))


@pytest.mark.parametrize("option, value", [
    ("--valve-mm", "0"), ("--valve-mm", "-1"), ("--valve-mm", "nan"), ("--annulus-mm", "inf"), ("--window", "0"),
    ("--step-mm", "nan"), ("--max-distance-mm", "-5"), ("--min-prominence", "2"), ("--flat-tolerance", "-0.1"),
])
def test_derive_numeric_options(sandbox, capsys, option, value):
    hostile(sandbox, ["derive", SUBJ, "-o", f"{S}/out/l.nii.gz", option, value], capsys, 2, option)


def test_derive_usage_errors_are_status_2(sandbox, capsys):
    hostile(sandbox, ["derive", "-o", f"{S}/out/l.nii.gz"], capsys, 2, "give a subject_dir")
    hostile(sandbox, ["derive", "--multilabel", "nonsense", "-o", f"{S}/out/l.nii.gz"], capsys, 2, "task=file")
    hostile(sandbox, ["derive", f"{S}/data/nowhere", "-o", f"{S}/out/l.nii.gz"], capsys, 2, "nowhere")
    hostile(sandbox, ["derive", SUBJ, "-o", f"{S}/out/l.nii.gz", "--report", f"{S}/out/l.nii.gz"], capsys, 2, "--report")
    hostile(sandbox, ["derive", SUBJ, "-o", f"{S}/out/l.nii.gz", "--qc", f"{S}/out/qc.txt"], capsys, 2, ".png")
    hostile(sandbox, ["derive", f"{S}/data/ts", "--batch", "-o", f"{S}/data/ts/derived"], capsys, 2, "inside the input folder")
    hostile(sandbox, ["derive", f"{S}/data/labels.nii.gz", "--batch", "-o", f"{S}/out/b"], capsys, 2, "labels.nii.gz")


def test_derive_missing_mask_is_an_exclusion_with_a_report(sandbox, capsys):
    (sandbox / "data/ts/s0001/segmentations/heart_ventricle_left.nii.gz").unlink()
    report = sandbox / "out" / "r.json"
    hostile(sandbox, ["derive", f"{S}/data/ts/s0001", "-o", f"{S}/out/l.nii.gz", "--report", report], capsys, 1,
            "missing_mask", "heartchambers_highres")
    assert json.loads(report.read_text())["excluded_code"] == "missing_mask"


def test_derive_v1_multilabel_file_given_as_v2_is_refused(sandbox, capsys):
    ml = f"{S}/data/total_v1.nii.gz"
    hostile(sandbox, ["derive", "--multilabel", f"total={ml}", "-o", f"{S}/out/l.nii.gz"], capsys, 2, "total_v1", "total_v1.nii.gz")
    rc, _, _ = run(["derive", "--multilabel", f"total_v1={ml.replace(S, str(sandbox))}", "-o", sandbox / "out" / "l.nii.gz", "--annulus-mm", "3"], capsys)
    assert rc == 0  # named right, it derives


def test_implausible_spacing_is_refused_from_the_header(sandbox, capsys):
    for name, axis in (("huge_spacing.nii.gz", "along z"), ("thick.nii.gz", "300 mm")):
        hostile(sandbox, ["derive", "--aorta", f"{S}/data/{name}", "--left-ventricle", f"{S}/data/{name}", "-o", f"{S}/out/l.nii.gz"],
                capsys, 2, name, axis)
        hostile(sandbox, ["measure", f"{S}/data/{name}", "-o", f"{S}/out/m"], capsys, 2, name, "outside")


# ----------------------------------------------------------------------------------------------
# convert: ids and names that try to leave the output folder, bad options


def _raw(sandbox: Path) -> Path:
    return sandbox / "out" / "raw"


def test_convert_case_ids_never_reach_a_path(sandbox, capsys):
    victim = sandbox / "victim"
    victim.mkdir()
    (victim / "secret.json").write_text("keep me")
    (victim / "secret.nii.gz").write_bytes(b"keep me too")
    (victim / "secret_0000.nii.gz").write_bytes(b"and me")
    with open(sandbox / "data/ts/meta.csv", "a") as f:
        f.write("../../../victim/secret;60;m;x;ct;train\n/etc/passwd;1;m;x;ct;train\n")
    for _ in range(2):  # the rerun must not touch the victim either
        hostile(sandbox, ["convert", f"{S}/data/ts", "-d", "301", "--raw", _raw(sandbox), "--quiet", "--annulus-mm", "3"], capsys, 0)
    assert (victim / "secret.json").read_text() == "keep me" and (victim / "secret.nii.gz").read_bytes() == b"keep me too"
    manifest = (_raw(sandbox) / "Dataset301_TAVR" / "manifest.csv").read_text()
    assert manifest.count("invalid_case_id") == 2


@pytest.mark.parametrize("args, mention", [
    (["-n", "../../escape"], "-n/--name"), (["-n", "a/b"], "-n/--name"), (["-d", "-5"], "-d"), (["-d", "0"], "-d"),
    (["-d", "1000"], "-d"), (["-d", "x"], "-d"), (["-np", "0"], "-np"), (["--seed", "-1"], "--seed"),
    (["--valve-mm", "-1"], "--valve-mm"), (["--shard", "5/2"], "--shard"), (["--shard", "x"], "--shard"),
    (["--shard", "0/2", "--merge"], "--merge"), (["--scheme", "import"], "--mapping"),
    (["--scheme", "import", "--mapping", "{S}/data/nowhere.json"], "nowhere.json"),
    (["--scheme", "import", "--mapping", "{S}/data/ts/meta.csv"], "meta.csv"),
])
def test_convert_bad_options(sandbox, capsys, args, mention):
    args = [a.replace("{S}", str(sandbox)) for a in args]
    hostile(sandbox, ["convert", f"{S}/data/ts", "-d", "301", "--raw", _raw(sandbox), "--quiet", *args], capsys, 2, mention)
    assert not _raw(sandbox).exists() or not any(_raw(sandbox).iterdir())


def test_convert_output_roots(sandbox, capsys):
    hostile(sandbox, ["convert", f"{S}/data/ts", "-d", "301", "--raw", f"{S}/data/labels.nii.gz"], capsys, 2, "labels.nii.gz", "is a file")
    hostile(sandbox, ["convert", f"{S}/data/ts", "-d", "301", "--raw", f"{S}/data/ts/raw"], capsys, 2, "inside the input folder")
    hostile(sandbox, ["convert", f"{S}/data/labels.nii.gz", "-d", "301", "--raw", _raw(sandbox)], capsys, 2, "is a file")
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env_free)
        hostile(sandbox, ["convert", f"{S}/data/ts", "-d", "301"], capsys, 2, "nnunet_raw is not set")


# ----------------------------------------------------------------------------------------------
# compare


def _compare(sandbox, *extra):
    nn = sandbox / "data" / "nn"
    return ["compare", "-d", "123", "-c", "3d_fullres", "-tr", "TrA", "-f", "0", "--raw", nn / "raw",
            "--preprocessed", nn / "pre", "--results", nn / "res", "-o", sandbox / "out" / "cmp", "-q", "-np", "1", *extra]


@pytest.mark.parametrize("args, mention", [
    (["-f", "0", "0"], "-f"), (["-tr", "TrA", "TrA"], "-tr"), (["--confidence", "2"], "--confidence"),
    (["--confidence", "0"], "--confidence"), (["--confidence", "nan"], "--confidence"), (["--bootstrap", "0"], "--bootstrap"),
    (["--alpha", "1.5"], "--alpha"), (["-np", "0"], "-np"), (["--seed", "-3"], "--seed"), (["-f", "x"], "-f"),
    (["--no-validation"], "--test"), (["--test", "{S}/data/preds", "{S}/data/preds"], "--test"),
    (["--test", "{S}/data/nowhere"], "nowhere"), (["--test-labels", "{S}/data/labels.nii.gz"], "labels.nii.gz"),
])
def test_compare_bad_options(sandbox, capsys, args, mention):
    args = [a.replace("{S}", str(sandbox)) for a in args]
    hostile(sandbox, _compare(sandbox) + args, capsys, 2, mention)
    assert not (sandbox / "out" / "cmp").exists()


def test_compare_outputs(sandbox, capsys):
    argv = _compare(sandbox)
    hostile(sandbox, argv[:-5] + ["-o", sandbox / "data" / "labels.nii.gz", "-q"], capsys, 2, "is a file")
    hostile(sandbox, argv[:-5] + ["-o", sandbox / "data" / "preds" / "cmp", "-q", "--test", sandbox / "data" / "preds"], capsys, 2, "inside the input folder")
    hostile(sandbox, argv, capsys, 0)  # the sane call works and writes only below out/


# ----------------------------------------------------------------------------------------------
# measure


@pytest.mark.parametrize("value", ["-10", "0", "nan", "1e6", "inf"])
def test_measure_height(sandbox, capsys, value):
    hostile(sandbox, ["measure", f"{S}/data/labels.nii.gz", "-o", f"{S}/out/m", "--height", value], capsys, 2, "--height")


def test_measure_paths(sandbox, capsys):
    hostile(sandbox, ["measure", f"{S}/data/labels.nii.gz", "-o", f"{S}/data/labels.nii.gz"], capsys, 2, "is a file")
    hostile(sandbox, ["measure", f"{S}/data/nowhere.nii.gz", "-o", f"{S}/out/m"], capsys, 2, "nowhere.nii.gz")
    hostile(sandbox, ["measure", f"{S}/data/preds", "-o", f"{S}/data/preds/m"], capsys, 2, "inside the input folder")
    hostile(sandbox, ["measure", f"{S}/data/labels.nii.gz", "--ct", f"{S}/data/nowhere", "-o", f"{S}/out/m"], capsys, 2, "--ct")


def test_measure_folder_goes_on_past_a_bad_case(sandbox, capsys):
    folder = sandbox / "out" / "segs"
    folder.mkdir()
    shutil.copy(sandbox / "data" / "labels.nii.gz", folder / "good.nii.gz")
    shutil.copy(sandbox / "data" / "thick.nii.gz", folder / "thick.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    err = hostile(sandbox, ["measure", folder, "-o", f"{S}/out/m", "--no-figure"], capsys, 1, "broken.nii.gz", "thick.nii.gz")
    table = (sandbox / "out" / "m" / "measurements.csv").read_text()
    assert "good" in table and "broken" in table and "unreadable" in table and "implausible_geometry" in table
    assert "failed" in err


# ----------------------------------------------------------------------------------------------
# phantom, demo, trainer-path, top level


@pytest.mark.parametrize("args, mention", [
    (["-n", "0"], "--num-subjects"), (["-n", "-1"], "--num-subjects"), (["--spacing", "nan"], "--spacing"),
    (["--spacing", "0"], "--spacing"), (["--spacing", "1e6"], "--spacing"), (["--spacing", "1", "2"], "--spacing"),
    (["--shape", "0", "0", "0"], "--shape"), (["--shape", "5000", "5000", "5000"], "--shape"), (["--seed", "-1"], "--seed"),
    (["-n", "2", "--no-heart", "7"], "--no-heart"),
])
def test_phantom_bad_options(sandbox, capsys, args, mention):
    hostile(sandbox, ["phantom", f"{S}/out/ph", *args], capsys, 2, mention)
    assert not (sandbox / "out" / "ph").exists()


def test_phantom_output_is_a_file(sandbox, capsys):
    hostile(sandbox, ["phantom", f"{S}/data/labels.nii.gz", "-n", "1"], capsys, 2, "is a file")


@pytest.mark.parametrize("args, mention", [
    (["--cases", "3"], "--cases"), (["--cases", "-1"], "--cases"), (["--seed", "-2"], "--seed"), (["-o", "{S}/data/labels.nii.gz"], "is a file"),
])
def test_demo_bad_options(sandbox, capsys, args, mention):
    args = [a.replace("{S}", str(sandbox)) for a in args]
    argv = ["demo", *args] if "-o" in args else ["demo", "-o", sandbox / "out" / "demo", *args]
    hostile(sandbox, argv, capsys, 2, mention)


def test_top_level_and_trainer_path(sandbox, capsys):
    hostile(sandbox, ["nonsense"], capsys, 2, "invalid choice")
    hostile(sandbox, ["trainer-path", "--bogus"], capsys, 2, "--bogus")
    hostile(sandbox, ["derive", SUBJ, "-o", f"{S}/out/l.nii.gz", "--bogus"], capsys, 2, "--bogus")


def test_hostile_helpers_detect_what_they_claim(sandbox, capsys):
    """The sandbox listing sees a stray file; a wrong exit code fails the check."""
    before = listing(sandbox, skip=sandbox / "out")
    (sandbox / "stray").write_text("x")
    assert listing(sandbox, skip=sandbox / "out") != before
    with pytest.raises(AssertionError):
        hostile(sandbox, ["phantom", f"{S}/out/ph", "-n", "0"], capsys, 0)


def test_phantom_never_overwrites_a_subject_it_did_not_make(sandbox, capsys):
    foreign = sandbox / "out" / "ts" / "s0000"
    foreign.mkdir(parents=True)
    shutil.copy(sandbox / "data" / "labels.nii.gz", foreign / "ct.nii.gz")  # somebody's CT, no phantom truth.json
    before = (foreign / "ct.nii.gz").read_bytes()
    hostile(sandbox, ["phantom", f"{S}/out/ts", "-n", "1", "--shape", "48", "40", "40", "--spacing", "6"], capsys, 2,
            "did not write", allowed=sandbox / "nowhere")
    assert (foreign / "ct.nii.gz").read_bytes() == before
