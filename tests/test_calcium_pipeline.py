"""Calcium end to end (issue 18), with nnU-Net's real commands on CPU:

phantoms with calcium -> ``nnunet-tavr convert --calcium`` -> ``nnUNetv2_plan_and_preprocess
--verify_dataset_integrity`` -> ``nnUNetv2_train`` of ``nnUNetTrainerFocalSR_smoke`` (tiny plans,
2 epochs x 3 iterations) -> ``nnUNetv2_predict --disable_tta`` -> ``nnunet-tavr measure`` with a
calcium section. One module-scoped fixture builds the 8-class dataset; the tests share it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import NnunetTree, nnunet_env

DATASET_ID = 318
DATASET_NAME = "Dataset318_TAVRCalcium"
TRAINER = "nnUNetTrainerFocalSR_smoke"
#: six 3 mm phantoms with calcium; subject 5 is calcium-free (same contrast, no nodule)
N_SUBJECTS, FREE = 6, 5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calcium_tree(tmp_path_factory) -> NnunetTree:
    from nnunet_tavr.phantom import write_dataset
    from nnunet_tavr.tiny_plans import write_tiny_plans

    root = tmp_path_factory.mktemp("nnunet_calcium")
    tree = NnunetTree(root=root, env=nnunet_env(root), dataset_id=DATASET_ID, dataset_name=DATASET_NAME)
    tree.folders.makedirs()
    write_dataset(tree.phantoms, N_SUBJECTS, seed=18, shape=(100, 80, 80), spacing=3.0, progress=False,
                  calcium=True, calcium_free=[FREE])
    tree.run("nnunet-tavr", "convert", str(tree.phantoms), "-d", str(DATASET_ID), "-n", "TAVRCalcium", "--quiet",
             "--valve-mm", "9", "--annulus-mm", "3", "--calcium")
    planning_env = {k: v for k, v in tree.env.items() if k != "nnUNet_n_proc_DA"}
    tree.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
             "--verify_dataset_integrity", env=planning_env)
    write_tiny_plans(tree.preprocessed / DATASET_NAME, configurations=("3d_fullres",))
    tree.run("nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "TAVRCalcium", "--install-splits")
    return tree


@pytest.fixture(scope="module")
def trained(calcium_tree):
    tree = calcium_tree
    tree.run("nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-p", tree.plans, "-tr", TRAINER, "-device", "cpu", timeout=1200)
    return tree.results / DATASET_NAME / f"{TRAINER}__{tree.plans}__3d_fullres" / "fold_0"


def test_converted_dataset_has_the_calcium_class(calcium_tree):
    from nnunet_tavr.io import read_array
    from nnunet_tavr.labels import LABELS_WITH_CALCIUM

    folder = calcium_tree.raw / DATASET_NAME
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == LABELS_WITH_CALCIUM and len(dataset["labels"]) - 1 == 8
    assert "pseudo-label" in dataset["description"]
    manifest = (folder / "manifest.csv").read_text().splitlines()
    header = manifest[0].split(",")
    assert "voxels_calcium" in header and "calcium_mm3" in header
    rows = {r.split(",")[0]: dict(zip(header, r.split(","))) for r in manifest[1:]}
    assert all(r["kept"] == "1" for r in rows.values())
    free = f"s{FREE:04d}"
    assert rows[free]["voxels_calcium"] == "0" and float(rows[free]["calcium_mm3"]) == 0.0
    with_calcium = [c for c in rows if c != free]
    assert all(int(rows[c]["voxels_calcium"]) > 0 for c in with_calcium)
    for case in with_calcium[:2]:  # the label files agree with the manifest
        label = next(folder.glob(f"labels*/{case}.nii.gz"))
        labels, _ = read_array(label)
        assert int(np.count_nonzero(labels == 8)) == int(rows[case]["voxels_calcium"])


def test_nnunet_trains_predicts_and_measure_reports_calcium(calcium_tree, trained, tmp_path):
    import torch

    from nnunet_tavr.io import read_array

    tree = calcium_tree
    assert (trained / "checkpoint_final.pth").is_file()
    weights = torch.load(trained / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    heads = [v for k, v in weights.items() if "seg_layers" in k and k.endswith("weight")]
    assert heads and all(h.shape[0] == 9 for h in heads), "the network must output background + 8 classes"

    folder = tree.raw / DATASET_NAME
    images = sorted((folder / "imagesTs").glob("*_0000.nii.gz"))
    assert images
    inp, pred, meas = tmp_path / "in", tmp_path / "pred", tmp_path / "meas"
    inp.mkdir()
    for image in images:
        shutil.copy(image, inp / image.name)
    tree.run("nnUNetv2_predict", "-i", str(inp), "-o", str(pred), "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0",
             "-p", tree.plans, "-tr", TRAINER, "--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1", timeout=1200)
    case = images[0].name.replace("_0000.nii.gz", "")
    seg, _ = read_array(pred / f"{case}.nii.gz")
    assert set(np.unique(seg).tolist()) <= set(range(9))

    # measure the prediction with its CT: a calcium section (from label 8 if the short training
    # predicted any, else by rule from the CT), with every region and the method it used
    tree.run("nnunet-tavr", "measure", str(pred), "--ct", str(inp), "-o", str(meas))
    section = json.loads((meas / case / "measurements.json").read_text())["calcium"]
    assert "missing" not in section
    from nnunet_tavr.label_derivation.calcium_regions import REGIONS

    for region in REGIONS:
        assert section[f"{region}_volume"]["unit"] == "mm3"
        assert section[f"{region}_components"]["value"] >= 0
    expected = "calcium label" if np.any(seg == 8) else "found by rule"
    assert any(expected in note for note in section["notes"])
    assert (meas / case / "measurements.png").is_file()

    # the reference label map of the same case: calcium from label 8, densities from the CT
    ref = next(folder.glob(f"labels*/{case}.nii.gz"))
    tree.run("nnunet-tavr", "measure", str(ref), "--ct", str(inp / images[0].name), "-o", str(tmp_path / "ref"))
    section = json.loads((tmp_path / "ref" / "measurements.json").read_text())["calcium"]
    reference, _ = read_array(ref)
    voxel = float(np.prod(json.loads((tmp_path / "ref" / "measurements.json").read_text())["spacing_mm"]))
    assert section["total_volume"]["value"] == pytest.approx(np.count_nonzero(reference == 8) * voxel)
    assert any("calcium label" in note for note in section["notes"])
