"""Derivation rules on hand-built volumes whose answers are known exactly (paper section 2.1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, gaussian_filter

from nnunet_tavr.label_derivation import (
    RuleNotApplicable,
    derive_annulus,
    derive_aortic_root,
    derive_tavr_labels,
    derive_valve,
    find_root_end,
    fit_annulus_plane,
)
from nnunet_tavr.labels import LABELS, PAINT_ORDER

# ----------------------------------------------------------------------------------------------
# valve and annulus: distance rules


def _stacked(shape, split, spacing_axis=0):
    """Left ventricle below ``split`` along an axis, aorta from ``split`` on (touching blocks)."""
    lv = np.zeros(shape, bool)
    aorta = np.zeros(shape, bool)
    index = [slice(None)] * 3
    index[spacing_axis] = slice(0, split)
    lv[tuple(index)] = True
    index[spacing_axis] = slice(split, None)
    aorta[tuple(index)] = True
    return aorta, lv


def _layers(mask, axis):
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(mask.any(axis=other)).tolist()


def test_valve_is_exactly_the_slab_within_distance_isotropic():
    aorta, lv = _stacked((20, 12, 12), 5)
    valve = derive_valve(aorta, lv, (1.5, 1.5, 1.5))
    # Layers 5, 6, 7 lie 1.5, 3.0 and 4.5 mm from the ventricle (4.5 is included: 3 voxels).
    assert _layers(valve, 0) == [5, 6, 7]
    assert valve.sum() == 3 * 12 * 12
    assert not (valve & ~aorta).any()


@pytest.mark.parametrize(
    "axis, spacing, expected",
    [
        (0, (2.0, 0.7, 0.7), [5, 6]),  # 2.0, 4.0 mm; 6.0 mm is out
        (2, (2.0, 0.7, 0.7), [5, 6, 7, 8, 9, 10]),  # 0.7 .. 4.2 mm; 4.9 mm is out
        (1, (1.0, 3.0, 1.0), [5]),  # 3.0 mm; 6.0 mm is out
    ],
)
def test_valve_thresholds_are_physical_on_anisotropic_grids(axis, spacing, expected):
    aorta, lv = _stacked((16, 16, 16), 5, spacing_axis=axis)
    assert _layers(derive_valve(aorta, lv, spacing), axis) == expected


def test_valve_includes_exactly_the_threshold_and_not_beyond():
    shape, spacing = (20, 8, 8), (1.5, 1.5, 1.5)
    lv = np.zeros(shape, bool)
    lv[:5] = True
    aorta = np.zeros(shape, bool)
    aorta[7:] = True  # gap of one layer: layer 7 is (7 - 4) * 1.5 = 4.5 mm from the ventricle
    assert _layers(derive_valve(aorta, lv, spacing), 0) == [7]
    aorta[7] = False  # now 6.0 mm apart: no valve
    assert not derive_valve(aorta, lv, spacing).any()


def test_annulus_is_the_ventricle_layer_touching_the_aorta():
    aorta, lv = _stacked((20, 12, 12), 5)
    annulus = derive_annulus(aorta, lv, (1.5, 1.5, 1.5))
    assert _layers(annulus, 0) == [4]
    assert annulus.sum() == 12 * 12
    assert not (annulus & ~lv).any()


def test_annulus_ignores_diagonal_contacts_beyond_one_voxel():
    # Voxels that touch only along an edge are sqrt(2) * 1.5 = 2.12 mm apart: not within 1.5 mm.
    aorta = np.zeros((6, 6, 6), bool)
    lv = np.zeros((6, 6, 6), bool)
    aorta[3, 3, 3] = True
    lv[2, 2, 3] = True
    assert not derive_annulus(aorta, lv, (1.5, 1.5, 1.5)).any()
    lv[2, 3, 3] = True  # a face neighbour is 1.5 mm away
    assert np.argwhere(derive_annulus(aorta, lv, (1.5, 1.5, 1.5))).tolist() == [[2, 3, 3]]


def _blobs(seed, shape=(36, 40, 44)):
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), 3.0)
    return field > 0.08, field < -0.08


@pytest.mark.parametrize("seed, spacing", [(0, (1.5, 1.5, 1.5)), (1, (2.5, 0.8, 1.1)), (2, (0.9, 1.7, 0.6))])
def test_distance_rules_match_a_full_volume_reference(seed, spacing):
    """Cropping to the contact zone must not change the answer of the plain definition."""
    aorta, lv = _blobs(seed)
    d_lv = distance_transform_edt(~lv, sampling=spacing)
    d_aorta = distance_transform_edt(~aorta, sampling=spacing)
    for valve_mm in (4.5, 2.0):
        np.testing.assert_array_equal(derive_valve(aorta, lv, spacing, valve_mm), aorta & (d_lv <= valve_mm + 1e-4))
    for annulus_mm in (1.5, 3.1):
        np.testing.assert_array_equal(derive_annulus(aorta, lv, spacing, annulus_mm), lv & (d_aorta <= annulus_mm + 1e-4))


def test_distance_rules_on_empty_or_distant_masks_are_empty():
    aorta, lv = _stacked((12, 8, 8), 4)
    empty = np.zeros_like(aorta)
    assert not derive_valve(empty, lv, (1, 1, 1)).any()
    assert not derive_annulus(aorta, empty, (1, 1, 1)).any()
    far = np.zeros((40, 8, 8), bool)
    far[30:] = True
    assert not derive_valve(far, lv.repeat(5, axis=0)[:40], (1, 1, 1)).any()


# ----------------------------------------------------------------------------------------------
# plane fit as a rule (the fit itself is tested in test_geometry.py)


def test_degenerate_annulus_excludes_the_case():
    with pytest.raises(RuleNotApplicable, match="annulus_degenerate"):
        fit_annulus_plane(np.zeros((2, 3)))
    with pytest.raises(RuleNotApplicable, match="collinear") as info:
        fit_annulus_plane(np.outer(np.arange(10.0), [1.0, 2.0, 3.0]))
    assert info.value.code == "annulus_degenerate"


# ----------------------------------------------------------------------------------------------
# the area curve: first minimum after the first maximum


def test_curve_end_on_a_clean_curve_and_with_a_flat_bottom():
    d = np.arange(40) * 1.5
    area = 500 + 300 * np.exp(-(((d - 12) / 6) ** 2)) + np.where(d > 24, 4.0 * (d - 24), 0.0)
    peak, end = find_root_end(d, area)
    assert d[peak] == pytest.approx(12.0, abs=1.5)
    # The bulge has decayed to within 0.5 % of the bottom by ~24 mm, where the widening starts.
    assert 20.0 <= end <= 25.5
    # A flat bottom (a plateau) resolves to where it starts, deterministically.
    flat = area.copy()
    flat[(d >= 22.5) & (d <= 33)] = flat[d >= 22.5].min()
    _, end_flat = find_root_end(d, flat)
    assert end_flat <= 24.0
    assert find_root_end(d, flat) == find_root_end(d, flat.copy())


def test_curve_noise_below_the_prominence_is_ignored():
    d = np.arange(50) * 1.5
    base = 500 + 300 * np.exp(-(((d - 12) / 6) ** 2)) + np.where(d > 30, 6.0 * (d - 30), 0.0)
    wiggle = 3.0 * np.sin(d * 2.1)  # +-3 mm² ripple: under 1 % of the peak
    peak, end = find_root_end(d, base + wiggle)
    peak0, end0 = find_root_end(d, base)
    assert abs(d[peak] - d[peak0]) <= 1.5 and abs(end - end0) <= 3.0
    with pytest.raises(RuleNotApplicable, match="no_area_maximum"):
        find_root_end(d, 500 + wiggle)  # only ripple: no real maximum


# ----------------------------------------------------------------------------------------------
# aortic root on a hand-built aorta: known radius profile along an arbitrary axis


def _eased(s, knots):
    r = np.full(np.shape(s), knots[0][1], float)
    for (s0, v0), (s1, v1) in zip(knots[:-1], knots[1:]):
        t = np.clip((s - s0) / (s1 - s0), 0, 1)
        r = np.where(s >= s0, v0 + (v1 - v0) * (0.5 - 0.5 * np.cos(np.pi * t)), r)
    return r


#: Root radius profile (distance from the annulus plane in mm, radius in mm): sinus maximum at 10,
#: sinotubular junction (the root's end) at 22, then the wider ascending aorta.
KNOTS = [(0.0, 10.0), (10.0, 14.0), (22.0, 10.0), (40.0, 12.0)]
STJ_MM = 22.0


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def hand_built_aorta(direction, spacing, length=70.0, lv_depth=12.0, descending=True, knots=KNOTS):
    """An aorta along ``direction`` starting at a flat ventricle, with a parallel descending limb.

    The descending limb (radius 8 mm, 30 mm beside the ascending one) runs the whole length and
    joins the ascending aorta in an arch over its last 8 mm, so every sweep plane cuts it too.
    Returns aorta, left ventricle, descending-limb mask, annulus-plane point and normal (mm).
    """
    n = _unit(direction)
    u = _unit(np.cross(n, [0.3, 0.5, 0.81]))
    spacing = np.asarray(spacing, float)
    half_extent = np.abs(n) * (length + lv_depth) / 2 + (1 - np.abs(n)) * 45 + 6
    shape = tuple(int(np.ceil(2 * h / s)) for h, s in zip(half_extent, spacing))
    mid = (np.asarray(shape) - 1) * spacing / 2
    origin = mid - n * (length - lv_depth) / 2 - u * 15.0  # annulus centre
    grids = np.meshgrid(*[np.arange(k) * sp for k, sp in zip(shape, spacing)], indexing="ij")
    rel = np.stack([g - o for g, o in zip(grids, origin)], axis=-1)
    s = rel @ n
    rad = np.linalg.norm(rel - s[..., None] * n, axis=-1)
    aorta = (s >= 0) & (s <= length) & (rad <= _eased(s, knots))
    lv = (s >= -lv_depth) & (s < 0) & (rad <= 16.0)
    desc = np.zeros(shape, bool)
    if descending:
        rel_d = rel - 30.0 * u
        rad_d = np.linalg.norm(rel_d - (rel_d @ n)[..., None] * n, axis=-1)
        limb = (s >= -lv_depth) & (s <= length) & (rad_d <= 8.0)
        across = rel @ u
        arch = (s >= length - 8) & (s <= length) & (across >= 0) & (across <= 30) & (np.linalg.norm(rel - s[..., None] * n - across[..., None] * u, axis=-1) <= 8)
        desc = limb & ~aorta
        aorta = aorta | limb | arch
    return aorta, lv, desc, origin, n


GEOMETRIES = {
    "axis-aligned": ((1.0, 0.0, 0.0), (1.5, 1.5, 1.5)),
    "rotated": ((0.62, -0.5, 0.6), (1.5, 1.5, 1.5)),
    "anisotropic-rotated": ((0.55, 0.7, -0.45), (2.0, 0.8, 0.8)),
}


@pytest.fixture(scope="module", params=list(GEOMETRIES))
def built(request):
    direction, spacing = GEOMETRIES[request.param]
    aorta, lv, desc, origin, n = hand_built_aorta(direction, spacing)
    annulus = derive_annulus(aorta, lv, spacing)
    root, details = derive_aortic_root(aorta, annulus, spacing)
    return dict(aorta=aorta, lv=lv, desc=desc, origin=origin, n=n, spacing=np.asarray(spacing), annulus=annulus, root=root, d=details)


def test_root_plane_is_the_annulus_plane_oriented_into_the_aorta(built):
    d = built["d"]
    assert np.dot(d.plane_normal, built["n"]) > 0.999  # fitted without assuming an axis, sign included
    offset = float(np.dot(d.plane_point_mm - built["origin"], built["n"]))
    assert abs(offset) < 0.5  # on the ventricle-aorta interface


def test_root_ends_at_the_sinotubular_junction(built):
    d = built["d"]
    assert d.peak_distance_mm == pytest.approx(10.0, abs=3.0)
    assert d.end_distance_mm == pytest.approx(STJ_MM, abs=1.5)


def test_root_is_the_aorta_between_the_planes_and_excludes_the_descending_limb(built):
    root, d, sp = built["root"], built["d"], built["spacing"]
    assert not (root & ~built["aorta"]).any()
    assert not (root & built["desc"]).any()
    s = (np.argwhere(root) * sp - d.plane_point_mm) @ d.plane_normal
    assert s.max() <= d.end_distance_mm + 1e-6 and s.min() >= -d.step_mm
    # Every ascending voxel strictly inside the two planes is root.
    pts = np.argwhere(built["aorta"] & ~built["desc"])
    s_all = (pts * sp - d.plane_point_mm) @ d.plane_normal
    inside = pts[(s_all > 0.5) & (s_all < d.end_distance_mm - 0.5)]
    assert root[tuple(inside.T)].all()


def test_area_curve_counts_the_ascending_aorta_only(built):
    d = built["d"]
    # The descending limb (+201 mm²) is cut by every plane; the curve must follow pi r(s)^2.
    for dist in (15.0, 30.0, 45.0):
        k = int(np.argmin(np.abs(d.distances_mm - dist)))
        expected = np.pi * _eased(np.array(d.distances_mm[k]), KNOTS) ** 2
        assert d.area_mm2[k] == pytest.approx(expected, rel=0.08)


def test_root_without_a_minimum_is_not_forced():
    # A straight cylinder: the area rises at the annulus and stays flat - no maximum.
    aorta, lv, _, _, _ = hand_built_aorta((1.0, 0, 0), (1.5, 1.5, 1.5), descending=False, knots=[(0.0, 12.0), (1.0, 12.0)])
    annulus = derive_annulus(aorta, lv, (1.5, 1.5, 1.5))
    with pytest.raises(RuleNotApplicable) as info:
        derive_aortic_root(aorta, annulus, (1.5, 1.5, 1.5), max_distance_mm=50.0)
    assert info.value.code == "no_area_maximum"
    assert info.value.details is not None and len(info.value.details.area_mm2) > 10
    # A bulge, then narrowing all the way to the end of the sweep (e.g. a field of view cut
    # before the sinotubular junction): a maximum but no minimum after it.
    aorta, lv, _, _, _ = hand_built_aorta((1.0, 0, 0), (1.5, 1.5, 1.5), descending=False, knots=[(0.0, 10.0), (10.0, 14.0), (70.0, 8.0)])
    annulus = derive_annulus(aorta, lv, (1.5, 1.5, 1.5))
    with pytest.raises(RuleNotApplicable, match="no_area_minimum") as info:
        derive_aortic_root(aorta, annulus, (1.5, 1.5, 1.5), max_distance_mm=40.0)
    assert 8.0 <= info.value.details.peak_distance_mm <= 16.0  # smoothing moves it distally


def test_root_is_deterministic_and_does_not_modify_inputs(built):
    aorta, annulus = built["aorta"].copy(), built["annulus"].copy()
    root, d = derive_aortic_root(aorta, annulus, built["spacing"])
    np.testing.assert_array_equal(aorta, built["aorta"])
    np.testing.assert_array_equal(annulus, built["annulus"])
    np.testing.assert_array_equal(root, built["root"])
    assert d.end_distance_mm == built["d"].end_distance_mm


# ----------------------------------------------------------------------------------------------
# the label map: precedence, overlap rule, exclusions


def test_label_map_precedence_and_overlap_rule():
    aorta, lv, desc, _, _ = hand_built_aorta((1.0, 0, 0), (1.5, 1.5, 1.5))
    sp = (1.5, 1.5, 1.5)
    shape = aorta.shape
    # Overlaps: ventricle reaching 2 layers into the aorta, iliacs overlapping the aorta and each other.
    lv_over = lv.copy()
    z_first = int(np.flatnonzero(aorta.any(axis=(1, 2)))[0])
    lv_over[z_first : z_first + 2] |= aorta[z_first : z_first + 2]
    il = np.zeros(shape, bool)
    ir = np.zeros(shape, bool)
    il[-6:, :8, :] = True
    ir[-6:, 4:12, :] = True
    masks = {"aorta": aorta, "heart_ventricle_left": lv_over, "iliac_artery_left": il, "iliac_artery_right": ir}
    before = {k: v.copy() for k, v in masks.items()}
    labels, result = derive_tavr_labels(masks, sp)
    assert result.ok, result.excluded_reason
    for k in masks:
        np.testing.assert_array_equal(masks[k], before[k])  # inputs untouched
    assert any("both the aorta and the left-ventricle" in w for w in result.warnings)
    # Aorta wins over the ventricle: no shared voxel is ventricle or annulus.
    shared = aorta & lv_over
    assert np.isin(labels[shared], [LABELS["aorta"], LABELS["aortic_root"], LABELS["valve"]]).all()
    # The derived labels sit in their parents; annulus over ventricle, valve over root over aorta.
    aorta_family = [LABELS[n] for n in ("aorta", "aortic_root", "valve")]
    assert aorta[np.isin(labels, aorta_family)].all() and np.isin(labels[aorta], aorta_family).all()
    assert lv_over[labels == LABELS["annulus"]].all() and not aorta[labels == LABELS["annulus"]].any()
    valve = derive_valve(aorta, lv_over & ~aorta, sp)
    np.testing.assert_array_equal(labels == LABELS["valve"], valve)
    assert (labels[derive_annulus(aorta, lv_over & ~aorta, sp)] == LABELS["annulus"]).all()
    # Iliac voxels shared with the aorta stay aorta; left/right overlap goes to the right.
    assert not np.isin(labels[aorta], [LABELS["iliac_artery_left"], LABELS["iliac_artery_right"]]).any()
    assert (labels[il & ir & ~aorta] == LABELS["iliac_artery_right"]).all()
    counts = np.bincount(labels.ravel(), minlength=8)
    assert result.voxel_counts == {n: int(counts[v]) for n, v in LABELS.items() if v}
    assert PAINT_ORDER.index("annulus") > PAINT_ORDER.index("left_ventricle")
    assert PAINT_ORDER.index("valve") > PAINT_ORDER.index("aortic_root") > PAINT_ORDER.index("aorta")


def test_label_map_exclusions_give_reasons():
    aorta, lv, _, _, _ = hand_built_aorta((1.0, 0, 0), (1.5, 1.5, 1.5), descending=False)
    sp = (1.5, 1.5, 1.5)
    labels, r = derive_tavr_labels({"aorta": aorta}, sp)
    assert labels is None and r.excluded_code == "missing_mask" and "left_ventricle" in r.excluded_reason
    labels, r = derive_tavr_labels({"aorta": aorta, "left_ventricle": np.zeros_like(lv)}, sp, sources={"left_ventricle": "lv.nii.gz"})
    assert labels is None and r.excluded_code == "empty_mask" and "lv.nii.gz" in r.excluded_reason
    apart = lv.copy()
    apart[_layers(lv, 0)[-4:]] = False  # ventricle cut back by 4 layers: 6 mm below the aorta
    assert apart.any()
    labels, r = derive_tavr_labels({"aorta": aorta, "left_ventricle": apart}, sp)
    assert labels is None and r.excluded_code == "no_contact"
    labels, r = derive_tavr_labels({"aorta": aorta, "left_ventricle": lv}, sp, annulus_mm=1.0)
    assert r.excluded_code == "no_contact" and "below the voxel size" in r.excluded_reason
    labels, r = derive_tavr_labels({"aorta": aorta, "left_ventricle": lv}, sp, required=("aorta", "left_ventricle", "iliac_artery_left"))
    assert r.excluded_code == "missing_mask"
    labels, r = derive_tavr_labels({"aorta": aorta, "left_ventricle": lv}, sp)
    assert r.ok and any("iliac_artery_left" in w for w in r.warnings)
    assert r.to_dict()["ok"] and r.to_dict()["root"]["end_distance_mm"] == pytest.approx(STJ_MM, abs=1.5)


def test_label_map_accepts_non_binary_masks_with_a_warning():
    aorta, lv, _, _, _ = hand_built_aorta((1.0, 0, 0), (1.5, 1.5, 1.5), descending=False)
    ref, _ = derive_tavr_labels({"aorta": aorta, "left_ventricle": lv}, (1.5, 1.5, 1.5))
    labels, r = derive_tavr_labels({"aorta": aorta.astype(np.uint8) * 7, "left_ventricle": lv.astype(np.int16)}, (1.5, 1.5, 1.5))
    np.testing.assert_array_equal(labels, ref)
    assert any("not binary" in w and "aorta" in w for w in r.warnings)
