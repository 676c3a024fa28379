"""Label derivation on phantoms whose anatomy is known by construction (nnunet_tavr.phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_tavr.label_derivation import derive_tavr_labels
from nnunet_tavr.labels import LABELS
from nnunet_tavr.phantom import AORTA_PARTS, make_subject

CASES = {
    "seed0": dict(seed=0),
    "seed1": dict(seed=1),
    "seed2": dict(seed=2),
    "rotated": dict(seed=3, rotation_deg=(20.0, -15.0, 10.0)),
    "anisotropic": dict(seed=4, spacing=(2.5, 1.2, 1.2), shape=(120, 200, 200)),
}


@pytest.fixture(scope="module", params=list(CASES))
def derived(request):
    kw = dict(CASES[request.param])
    phantom = make_subject(kw.pop("seed"), **kw)
    masks = {k: v.copy() for k, v in phantom.masks.items()}
    labels, result = derive_tavr_labels(masks, phantom.spacing, case=request.param)
    for name, mask in phantom.masks.items():
        np.testing.assert_array_equal(masks[name], mask)  # inputs untouched
    return phantom, labels, result


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def test_root_end_is_within_one_and_a_half_mm_of_the_stj(derived):
    phantom, labels, result = derived
    assert result.ok, result.excluded_reason
    assert abs(result.root.end_distance_mm - phantom.truth["stj_distance_mm"]) <= 1.5


def test_annulus_plane_matches_the_truth(derived):
    phantom, _, result = derived
    truth_n = np.asarray(phantom.truth["annulus_normal"])
    assert np.dot(result.root.plane_normal, truth_n) > 0.999
    offset = np.dot(result.root.plane_point_mm - np.asarray(phantom.truth["annulus_center_mm"]), truth_n)
    assert abs(offset) < 0.6


def test_no_root_voxel_in_the_descending_aorta(derived):
    phantom, labels, _ = derived
    root = labels == LABELS["aortic_root"]
    assert root.any()
    assert not (root & (phantom.aorta_part == AORTA_PARTS["descending"])).any()
    assert not (root & (phantom.aorta_part == AORTA_PARTS["abdominal"])).any()


def test_precedence_holds(derived):
    phantom, labels, _ = derived
    m = phantom.masks
    aorta, lv = m["aorta"], m["heart_ventricle_left"]
    family = np.isin(labels, [LABELS["aorta"], LABELS["aortic_root"], LABELS["valve"]])
    np.testing.assert_array_equal(family, aorta)  # valve and root are aorta, and all aorta is one of them
    np.testing.assert_array_equal(np.isin(labels, [LABELS["left_ventricle"], LABELS["annulus"]]), lv & ~aorta)
    np.testing.assert_array_equal(labels == LABELS["iliac_artery_left"], m["iliac_artery_left"] & ~aorta & ~lv & ~m["iliac_artery_right"])
    # Valve over root: the root's first millimetres (within 4.5 mm of the ventricle) are valve.
    valve = labels == LABELS["valve"]
    assert valve.any() and (phantom.aorta_part[valve] == AORTA_PARTS["root"]).mean() > 0.95
    # Label values are the owned map's.
    assert set(np.unique(labels)) <= set(LABELS.values())


def test_labels_agree_with_the_phantoms_construction(derived):
    phantom, labels, _ = derived
    for name, minimum in (("aortic_root", 0.9), ("valve", 0.9), ("aorta", 0.97), ("left_ventricle", 0.99)):
        d = _dice(labels == LABELS[name], phantom.labels == LABELS[name])
        assert d >= minimum, f"{name}: Dice {d:.3f}"
    # The annulus is the ventricle's contact layer: it lies in the phantom's annulus footprint.
    ann = labels == LABELS["annulus"]
    assert ann.any() and (phantom.labels[ann] == LABELS["annulus"]).mean() > 0.9


def test_root_voxel_count_matches_the_root_geometry(derived):
    phantom, labels, result = derived
    truth_root = np.isin(phantom.labels, [LABELS["aortic_root"], LABELS["valve"]])
    ours = np.isin(labels, [LABELS["aortic_root"], LABELS["valve"]])
    # 1.5 mm of end error on a ~25 mm root is at most ~10 % of its volume.
    assert ours.sum() == pytest.approx(truth_root.sum(), rel=0.12)
    assert result.root.n_root_voxels >= (labels == LABELS["aortic_root"]).sum()


def test_chestless_scan_is_excluded_with_a_reason():
    phantom = make_subject(5, heart=False)
    labels, result = derive_tavr_labels(phantom.masks, phantom.spacing)
    assert labels is None
    assert result.excluded_code == "empty_mask" and "left_ventricle" in result.excluded_reason


def test_records_round_trip_and_feed_the_qc_figures(tmp_path):
    """The JSON record is enough to redraw the figures (the conversion keeps only records)."""
    import json

    from nnunet_tavr.label_derivation.labelmap import DerivationResult
    from nnunet_tavr.label_derivation.qc import dataset_curves, plot_case, plot_dataset_curves

    results = []
    for seed in (0, 1):
        phantom = make_subject(seed)
        labels, result = derive_tavr_labels(phantom.masks, phantom.spacing, case=f"s{seed}")
        back = DerivationResult.from_dict(json.loads(json.dumps(result.to_dict())))
        assert back.to_dict() == result.to_dict()
        results.append(back)
        if seed == 0:
            plot_case(tmp_path / "case.png", phantom.spacing, labels, back, ct=phantom.ct, reference_end_mm=phantom.truth["stj_distance_mm"])
    excluded = derive_tavr_labels(make_subject(5, heart=False).masks, (1.5, 1.5, 1.5))[1]
    grid, curves, ends = dataset_curves(results + [excluded])
    assert curves.shape == (2, len(grid)) and np.allclose(ends, [r.root.end_distance_mm for r in results])
    summary = plot_dataset_curves(tmp_path / "curves.png", results + [excluded])
    assert summary["n_cases"] == 2 and summary["n_excluded"] == 1
    assert 5.0 < summary["mean_curve_peak_mm"] < summary["mean_curve_minimum_mm"] < 40.0
    for png in ("case.png", "curves.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG" and (tmp_path / png).stat().st_size > 20_000
