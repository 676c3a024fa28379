"""The generic import scheme: CT + an existing label map with its own numbering + a mapping file ->
an nnU-Net dataset that nnU-Net accepts, with the per-class agreement against the derivation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.cli import main as cli
from nnunet_tavr.dataset_conversion.finalize import read_manifest
from nnunet_tavr.dataset_conversion.schemes.imported import check_mapping, remap
from nnunet_tavr.errors import InputError
from nnunet_tavr.folders import NnunetFolders
from nnunet_tavr.io import read_array, write_array
from nnunet_tavr.labels import LABELS

#: A made-up numbering of the TAVR classes, as another dataset would have it.
THEIRS = {"aorta": 11, "left_ventricle": 22, "aortic_root": 33, "valve": 44, "annulus": 55, "iliac_artery_left": 66, "iliac_artery_right": 77}
N = 5


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Five 1.5 mm phantoms with their by-construction labels renumbered; s0003 has a value the
    mapping does not name, s0004 has no label file."""
    from nnunet_tavr.phantom import make_subject, write_dataset

    root = tmp_path_factory.mktemp("import")
    source, labels_dir = root / "totalseg", root / "labels"
    write_dataset(source, N, seed=5, progress=False)
    truth = {}
    for i in range(N - 1):
        case = f"s{i:04d}"
        phantom = make_subject(seed=5 * 100003 + i)
        theirs = np.zeros(phantom.labels.shape, np.int16)
        for name, value in THEIRS.items():
            theirs[phantom.labels == LABELS[name]] = value
        if case == "s0003":
            theirs[0, 0, :3] = 999  # a value nobody mapped
        write_array(theirs, phantom.geometry, labels_dir / f"{case}.nii.gz")
        truth[case] = phantom.labels
    mapping = root / "map.json"
    mapping.write_text(json.dumps({"labels": LABELS, "map": {str(v): k for k, v in THEIRS.items()}}))
    folders = NnunetFolders.under(root)
    rc = cli(["convert", str(source), "--scheme", "import", "--labels", str(labels_dir), "--mapping", str(mapping),
              "-d", "310", "--raw", str(folders.raw), "--quiet"])
    assert rc == 0
    return folders, folders.raw / "Dataset310_Imported", truth, source


def test_imported_labels_are_the_mapped_originals(imported):
    _, folder, truth, source = imported
    manifest = read_manifest(folder).set_index("case")
    assert sorted(manifest.index[manifest["kept"] == 1]) == ["s0000", "s0001", "s0002"]
    assert manifest.loc["s0003", "reason"] == "unmapped_label" and "999" in manifest.loc["s0003", "detail"]
    assert manifest.loc["s0004", "reason"] == "missing_file"
    for case in ("s0000", "s0001", "s0002"):
        label = next(folder.glob(f"labels*/{case}.nii.gz"))
        array, _ = read_array(label)
        np.testing.assert_array_equal(array, truth[case])
        image = next(folder.glob(f"images*/{case}_0000.nii.gz"))
        assert image.read_bytes() == (source / case / "ct.nii.gz").read_bytes()  # the CT unchanged
        assert int(manifest.loc[case, "voxels_valve"]) == int((truth[case] == LABELS["valve"]).sum())
    assert json.loads((folder / "dataset.json").read_text())["labels"] == LABELS


def test_manifest_has_the_agreement_with_the_derivation(imported):
    """The phantoms' labels by construction follow the paper's rules, so the derivation from the
    TotalSegmentator masks of the same cases agrees closely, class by class."""
    _, folder, _, _ = imported
    manifest = read_manifest(folder).set_index("case")
    kept = manifest[manifest["kept"] == 1]
    assert set(kept["derivation"]) == {"derived"}
    for name in LABELS:
        if name == "background":
            continue
        dice = kept[f"dice_{name}"].astype(float)
        # measured 0.98-1.0 for every class but the one-voxel annulus layer (0.82)
        floor = 0.75 if name == "annulus" else 0.95
        assert (dice >= floor).all(), (name, dice.tolist())


@pytest.mark.slow
def test_nnunet_verifies_the_imported_dataset(imported):
    folders, _, _, _ = imported
    exe = str(Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess"))
    proc = subprocess.run([exe, "-d", "310", "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--verify_dataset_integrity", "--no_pp"],
                          env=dict(folders.env(), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (folders.preprocessed / "Dataset310_Imported" / "nnUNetPlans.json").is_file()


def test_mapping_checks():
    good = check_mapping({"map": {"5": "aorta", "6": None}})
    assert good["map"] == {5: 1, 6: 0} and good["labels"] == {k: v for k, v in LABELS.items()}
    for bad, message in (
        ({"map": {}}, "non-empty"),
        ({"map": {"x": "aorta"}}, "not a whole number"),
        ({"map": {"5": "heart"}}, "not in"),
        ({"labels": {"aorta": 1}, "map": {"5": "aorta"}}, "background"),
        ({"labels": {"background": 0, "a": 1, "b": 1}, "map": {"5": "a"}}, "distinct"),
        ({"map": {"5": "aorta"}, "unmapped": "ignore"}, "unmapped"),
    ):
        with pytest.raises(InputError, match=message):
            check_mapping(bad)


def test_remap_refuses_or_drops_unmapped_values():
    array = np.array([[[0, 5, 6, 9]]])
    np.testing.assert_array_equal(remap(array, {5: 1, 6: 0}, "background", "c", "f"), [[[0, 1, 0, 0]]])
    with pytest.raises(InputError, match=r"\[9\]") as info:
        remap(array, {5: 1, 6: 0}, "error", "c", "f")
    assert info.value.code == "unmapped_label"
    with pytest.raises(InputError, match="non-integer"):
        remap(array + 0.5, {5: 1}, "error", "c", "f")
