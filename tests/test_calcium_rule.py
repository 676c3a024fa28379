"""The calcium rule (label_derivation/calcium.py, calcium_regions.py): regions, the threshold formula,
exclusions with reasons, and agreement with phantom calcium known by construction (held-out seeds,
anisotropic and rotated grids, varied lumen, a calcium-free subject)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_valve
from nnunet_tavr.evaluation.calcium import calcium_agreement
from nnunet_tavr.label_derivation import derive_tavr_labels
from nnunet_tavr.label_derivation.calcium import (
    CalciumParams,
    anatomy_view,
    calcium_of_derivation,
    derive_calcium,
    lumen_statistics,
    paint_calcium,
    thresholds,
)
from nnunet_tavr.label_derivation.calcium_regions import REGION_ID, REGIONS, AnnulusFrame, annulus_frame, region_map
from nnunet_tavr.labels import CALCIUM_LABEL, LABELS
from nnunet_tavr.phantom import make_subject


#: Held-out seeds (the rule was developed on seeds below 200) on three grids.
HELD_OUT = {
    "iso_1.5": dict(seed=4101),
    "aniso_2.0x1.2": dict(seed=4102, shape=(150, 200, 200), spacing=(2.0, 1.2, 1.2)),
    "rotated_2.5x0.8": dict(seed=4103, shape=(120, 300, 300), spacing=(2.5, 0.8, 0.8), rotation_deg=(10.0, -15.0, 20.0)),
}


def derived(phantom):
    coarse = max(phantom.spacing) >= 3.0  # the paper's 3 and 1 voxels on a 3 mm grid
    labels, result = derive_tavr_labels(phantom.masks, phantom.spacing, **(dict(valve_mm=9.0, annulus_mm=3.0) if coarse else {}))
    assert result.ok, result.excluded_reason
    return labels, result


@pytest.fixture(scope="module", params=list(HELD_OUT))
def held_out(request):
    phantom = make_subject(calcium=True, **HELD_OUT[request.param])
    labels, result = derived(phantom)
    return phantom, labels, result, calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root)


def test_rule_agrees_with_construction(held_out):
    phantom, _, _, calcium = held_out
    assert calcium.ok, calcium.excluded_reason
    nodules = phantom.truth["calcium"]["nodules"]
    agreement = calcium_agreement(phantom.calcium, nodules, calcium)
    assert agreement["n_big"] >= 5
    assert agreement["dice"] >= 0.8, agreement["dice"]
    assert abs(agreement["volume_error"]) <= 0.15, agreement["volume_error"]
    big = [n for n in agreement["nodules"] if n["size_mm"] >= 3.0]
    assert all(n["found"] for n in big), [n for n in big if not n["found"]]
    found = [n for n in agreement["nodules"] if n["found"]]
    assert all(n["assigned"] == n["region"] for n in found), [(n["region"], n["assigned"]) for n in found if n["assigned"] != n["region"]]
    assert agreement["false_components"] == []


def test_components_are_described_in_the_arrays_frame(held_out):
    phantom, _, _, calcium = held_out
    full = np.zeros(phantom.ct.shape, np.int32)
    full[calcium.box] = calcium.component_map
    for comp in calcium.components[:5]:
        idx = np.argwhere(full == comp.id)
        assert len(idx) == comp.voxels
        np.testing.assert_allclose(comp.centroid_mm, idx.mean(0) * phantom.spacing, atol=1e-3)
        assert comp.peak_hu == phantom.ct[tuple(idx.T)].max()
        assert comp.score == pytest.approx(comp.volume_mm3 * comp.density_factor)


def test_threshold_follows_each_subjects_lumen():
    """Lumen 200-550 HU by construction: each region's threshold is its own lumen + 100 HU."""
    seen = []
    for seed in (4111, 4112, 4113):
        phantom = make_subject(seed, calcium=True, calcium_nodules=0, shape=(100, 80, 80), spacing=3.0)
        labels, result = derived(phantom)
        calcium = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root, CalciumParams())
        lumen = phantom.truth["calcium"]["lumen_hu"]
        for region, entry in calcium.lumen.items():
            expected = lumen["iliac_arteries"] if region.startswith("iliac") else lumen["aorta"]
            assert entry["lumen_source"] != "pooled"
            assert entry["lumen_median_hu"] == pytest.approx(expected, abs=6)  # noise 12 HU, ~100 iliac voxels at 3 mm
            assert entry["threshold_hu"] == pytest.approx(entry["lumen_median_hu"] + 100.0)
        seen.append(lumen["aorta"])
        assert calcium.components == []  # calcium-free: nothing reported
    assert max(seen) - min(seen) > 60


def test_calcium_free_subject_reports_no_calcium():
    phantom = make_subject(4120, calcium=True, calcium_nodules=0)
    labels, result = derived(phantom)
    calcium = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root)
    assert calcium.ok and calcium.components == [] and calcium.total_mm3 == 0.0
    assert not paint_calcium(labels, calcium).max() >= CALCIUM_LABEL


def test_robust_sd_raises_the_threshold_on_noisy_scans():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[:, 10:30, 10:30] = LABELS["aorta"]
    regions = region_map(labels, (1.0, 1.0, 1.0), None)
    for sd, expected in ((10.0, 100.0), (40.0, 160.0)):
        ct = (300.0 + rng.normal(0, sd, labels.shape)).astype(np.float32)
        lumen = lumen_statistics(ct, regions, (1.0, 1.0, 1.0))
        assert lumen["aorta"].median_hu == pytest.approx(300, abs=0.15 * sd) and lumen["aorta"].sd_hu == pytest.approx(sd, rel=0.1)
        info, problems = thresholds(lumen, CalciumParams())
        assert not problems
        assert info["aorta"]["threshold_hu"] == pytest.approx(300 + expected, abs=0.1 * expected + 2)


@pytest.fixture(scope="module")
def small():
    phantom = make_subject(4130, calcium=True, shape=(100, 80, 80), spacing=3.0)
    labels, result = derive_tavr_labels(phantom.masks, phantom.spacing, valve_mm=9.0, annulus_mm=3.0)
    return phantom, labels, result


def test_exclusions_have_reasons(small):
    phantom, labels, result = small
    ct = phantom.ct
    assert derive_calcium(None, labels, phantom.spacing).excluded_code == "no_ct"
    raw = (ct.astype(np.int32) + 1024).astype(np.uint16)  # scanner values without the rescale intercept
    res = derive_calcium(raw, labels, phantom.spacing)
    assert res.excluded_code == "ct_not_hu" and "Hounsfield" in res.excluded_reason
    plain = ct.copy()
    plain[labels > 0] = 40  # no contrast in any lumen
    res = derive_calcium(plain, labels, phantom.spacing)
    assert res.excluded_code == "no_contrast" and "fixed threshold" in res.excluded_reason
    res = derive_calcium(ct, labels, phantom.spacing, CalciumParams(threshold_hu=100.0))
    assert res.excluded_code == "threshold_below_lumen"
    res = derive_calcium(ct, np.zeros_like(labels), phantom.spacing)
    assert res.excluded_code == "no_regions"


def test_fixed_threshold_and_options(small):
    phantom, labels, result = small
    lumen = phantom.truth["calcium"]["lumen_hu"]["aorta"]
    res = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root, CalciumParams(threshold_hu=lumen + 150))
    assert res.ok and all(e["threshold_hu"] == pytest.approx(lumen + 150, abs=0.1) for e in res.lumen.values())
    with_hm = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root)
    without = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root, CalciumParams(half_maximum=False))
    assert with_hm.total_mm3 > 0
    assert without.total_mm3 >= with_hm.total_mm3
    assert not np.any(with_hm.full_mask() & ~without.full_mask())  # half maximum only removes voxels
    huge = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root, CalciumParams(min_volume_mm3=1e6))
    assert huge.ok and huge.components == []


def test_paint_calcium_updates_counts(small):
    phantom, labels, result = small
    calcium = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root)
    counts = dict(result.voxel_counts)
    painted = paint_calcium(labels, calcium, counts)
    assert counts["calcium"] == np.count_nonzero(painted == CALCIUM_LABEL) > 0
    for name, value in LABELS.items():
        if value:
            assert counts[name] == np.count_nonzero(painted == value), name
    # the anatomy view gives every calcium voxel back to a structure it lies on (or background)
    back = anatomy_view(painted)
    assert not np.any(back == CALCIUM_LABEL)
    assert np.array_equal(back[painted != CALCIUM_LABEL], labels[painted != CALCIUM_LABEL])


def test_region_map_follows_the_annulus_plane():
    """Synthetic: annulus plane z = 20 mm (normal +z), radius 10 mm, 1 mm voxels."""
    labels, _ = synthetic_valve()
    frame = AnnulusFrame.make((19.5, 30, 30), (1, 0, 0), 10.0)
    regions = region_map(labels, (1.0, 1.0, 1.0), frame)
    at = lambda z, r: REGIONS[regions[z, 30, 30 + r] - 1] if regions[z, 30, 30 + r] else None  # noqa: E731
    assert at(21, 0) == "annulus" and at(25, 0) == "valve" and at(35, 5) == "aortic_root"
    assert at(18, 0) == "annulus" and at(14, 5) == "lvot" and at(14, 20) is None and at(5, 0) is None
    assert at(19, 11) == "annulus"
    # the frame fitted to the labels agrees with the given one
    fitted = annulus_frame(labels, (1.0, 1.0, 1.0))
    assert abs(fitted.normal[0]) > 0.99 and fitted.normal[0] > 0
    assert fitted.centre[0] == pytest.approx(19.5, abs=0.6) and fitted.radius_mm == pytest.approx(10.5, abs=1.0)
    assert regions.max() <= REGION_ID["iliac_artery_right"]


def test_bone_beside_a_leaking_segmentation_is_not_calcium(monkeypatch):
    """A segmentation that leaks onto the spine (as a short-trained network's aorta can) puts the
    vertebra's surface in the aorta's wall band, and a vertebra (450 HU) is brighter than a 231 HU
    lumen + 100 HU: the rule must leave the bone out, with a warning, and still find nothing else."""
    import nnunet_tavr.label_derivation.calcium as rule
    from scipy import ndimage

    from nnunet_tavr.phantom.background import SPINE_HU

    phantom = make_subject(4121, calcium=True, calcium_nodules=0, shape=(100, 80, 80), spacing=3.0)
    labels, result = derived(phantom)
    bright = (np.abs(phantom.ct.astype(float) - SPINE_HU) < 60) & (labels == 0)
    components, _ = ndimage.label(bright)
    spine = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    mid = int(np.median(np.nonzero(spine.any(axis=(1, 2)))[0]))
    shell = ndimage.binary_dilation(spine) & ~spine & (labels == 0)
    shell[:mid] = shell[mid + 7:] = False  # 21 mm of the spine's surface labelled aorta
    leaked = labels.copy()
    leaked[shell] = LABELS["aorta"]
    calcium = calcium_of_derivation(phantom.ct, leaked, phantom.spacing, result.root)
    assert calcium.ok and calcium.components == [], [(c.region, c.volume_mm3) for c in calcium.components]
    assert any("bright structure" in w and "not calcium" in w for w in calcium.warnings), calcium.warnings
    monkeypatch.setattr(rule, "EXTRAVASCULAR_RATIO", np.inf)  # without the check the bone is calcium
    assert calcium_of_derivation(phantom.ct, leaked, phantom.spacing, result.root).total_mm3 > 1000
