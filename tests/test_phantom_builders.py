"""Each phantom builder paints the masks and returns the truth it claims; make_subject is their
composition (the byte-identity of the result is tests/test_identity.py's job)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_tavr.phantom import AORTA_PARTS, MASK_NAMES, make_subject
from nnunet_tavr.phantom.aorta import paint_curved_aorta
from nnunet_tavr.phantom.background import paint_background
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.fov import field_of_view
from nnunet_tavr.phantom.frame import anatomical_frame
from nnunet_tavr.phantom.iliacs import paint_iliacs
from nnunet_tavr.phantom.parameters import draw_parameters
from nnunet_tavr.phantom.root import paint_root
from nnunet_tavr.phantom.structure import Structure, totalseg_name
from nnunet_tavr.phantom.subject import merge_truth, union_of_masks
from nnunet_tavr.phantom.ventricle import paint_ventricle
from nnunet_tavr.totalseg import TASKS

GRID = dict(shape=(100, 80, 80), spacing=3.0)
CASES = {
    "default": dict(seed=7, **GRID),
    "no_heart": dict(seed=8, heart=False, **GRID),
    "no_iliacs": dict(seed=9, iliacs=False, **GRID),
    "rotated_anisotropic": dict(seed=10, shape=(90, 96, 96), spacing=(3.3, 2.5, 2.5), rotation_deg=(8.0, -12.0, 15.0)),
    "no_stenosis": dict(seed=11, stenosis=False, **GRID),
}
#: The masks each geometric builder claims to paint.
CLAIMS = {
    "aorta": {"aorta"},
    "root": {"aorta"},
    "ventricle": {"heart_ventricle_left", "heart_myocardium"},
    "iliacs": {"iliac_artery_left", "iliac_artery_right"},
    "fov": set(),
}
HEADER_KEYS = ["seed", "shape", "spacing", "rotation_deg"]


def build(seed, shape, spacing, heart=True, iliacs=True, stenosis=True, rotation_deg=(0.0, 0.0, 0.0)):
    """The builders called one by one, each given only what its signature asks for."""
    rng = np.random.default_rng(seed)
    prm = draw_parameters(rng)
    frame = anatomical_frame(prm, shape, spacing, rotation_deg)
    canvas = Canvas(frame.shape, frame.spacing)
    out = {"fov": field_of_view(frame, heart, iliacs)}
    out["aorta"] = paint_curved_aorta(frame, prm, canvas)
    out["root"] = paint_root(frame, prm, canvas)
    aorta = out["aorta"].masks["aorta"] | out["root"].masks["aorta"]
    out["ventricle"] = paint_ventricle(frame, prm, canvas, aorta)
    out["iliacs"] = paint_iliacs(frame, prm, canvas, aorta, stenosis)
    return out, frame, rng


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    params = CASES[request.param]
    structures, frame, _ = build(**params)
    return request.param, structures, frame, make_subject(**params)


def test_each_builder_paints_the_masks_it_claims(case):
    name, structures, frame, _ = case
    for key, structure in structures.items():
        assert set(structure.masks) == CLAIMS[key], key
        for mask_name, mask in structure.masks.items():
            assert mask.dtype == bool and mask.shape == frame.shape, (key, mask_name)
            assert mask.any(), f"{name}: builder {key} painted an empty {mask_name}"


def test_subject_masks_are_the_union_of_the_builders_masks_in_the_field_of_view(case):
    name, structures, _, subject = case
    kept = ~structures["fov"].aux["cut"]
    assert list(subject.masks) == list(MASK_NAMES)
    for mask_name in MASK_NAMES:
        union = np.zeros_like(subject.masks[mask_name])
        for structure in structures.values():
            if mask_name in structure.masks:
                union |= structure.masks[mask_name]
        assert np.array_equal(union & kept, subject.masks[mask_name]), f"{name}: {mask_name}"


def test_builders_do_not_overlap_where_they_say_they_leave_voxels_alone(case):
    _, s, _, _ = case
    aorta = s["aorta"].masks["aorta"] | s["root"].masks["aorta"]
    lv, myo = s["ventricle"].masks["heart_ventricle_left"], s["ventricle"].masks["heart_myocardium"]
    left, right = s["iliacs"].masks["iliac_artery_left"], s["iliacs"].masks["iliac_artery_right"]
    assert not (lv & aorta).any() and not (myo & aorta).any() and not (lv & myo).any()
    assert not (left & aorta).any() and not (right & aorta).any() and not (left & right).any()


def test_aorta_part_map_is_the_root_tube_over_the_curved_aorta(case):
    _, s, _, subject = case
    curved, tube = s["aorta"].aux["aorta_part"], s["root"].aux["aorta_part"]
    assert set(np.unique(curved).tolist()) <= {0, AORTA_PARTS["arch"], AORTA_PARTS["descending"], AORTA_PARTS["abdominal"]}
    assert set(np.unique(tube).tolist()) <= {0, AORTA_PARTS["root"], AORTA_PARTS["ascending"]}
    assert np.array_equal(curved > 0, s["aorta"].masks["aorta"]) and np.array_equal(tube > 0, s["root"].masks["aorta"])
    kept = ~s["fov"].aux["cut"]
    expected = np.where(tube > 0, tube, curved) * kept
    assert np.array_equal(expected, subject.aorta_part)


def test_truth_keys_are_the_union_of_the_builders_truth_keys(case):
    name, structures, _, subject = case
    keys = list(HEADER_KEYS)
    for key in ("fov", "root", "ventricle", "aorta", "iliacs"):
        own = list(structures[key].truth)
        assert own, f"builder {key} contributes no truth"
        assert not set(own) & set(keys), f"builder {key} repeats truth keys"
        keys += own
    keys.append("contrast_hu")  # the CT intensities' key (drawn with the parameters)
    assert list(subject.truth) == keys, name  # the order too: it is part of truth.json's bytes
    for structure in structures.values():
        for key, value in structure.truth.items():
            assert json.dumps(subject.truth[key]) == json.dumps(value), (name, key)


def test_builder_truth_lies_in_its_masks(case):
    """The landmarks a builder reports sit inside what it painted (mm -> voxel)."""
    name, s, frame, _ = case
    spacing = np.asarray(frame.spacing)

    def inside(mask, point_mm):
        index = tuple(np.rint(np.asarray(point_mm) / spacing).astype(int))
        return bool(mask[index])

    root = s["root"].truth
    above = np.asarray(root["annulus_center_mm"]) + 0.5 * root["sinus_distance_mm"] * np.asarray(root["annulus_normal"])
    assert inside(s["root"].masks["aorta"], above), name
    assert inside(s["ventricle"].masks["heart_ventricle_left"], s["ventricle"].truth["lv_center_mm"]), name
    assert inside(s["aorta"].masks["aorta"], s["aorta"].truth["bifurcation_mm"]), name
    for side, iliac in s["iliacs"].truth["iliac"].items():
        mid = np.asarray(iliac["start_mm"]) + 0.5 * iliac["length_mm"] * np.asarray(iliac["direction"])
        assert inside(s["iliacs"].masks[f"iliac_artery_{side}"], mid), (name, side)
        assert (iliac["stenosis"] is not None) == (CASES[name].get("stenosis", True) and side == _stenosis_side(CASES[name]))


def _stenosis_side(params):
    return draw_parameters(np.random.default_rng(params["seed"])).stenosis_side


def test_geometric_builders_draw_no_random_numbers():
    """Only the parameters and the CT draw from the subject's generator: a builder that drew from
    it would change the noise of every subject."""
    rng = np.random.default_rng(CASES["default"]["seed"])
    draw_parameters(rng)
    after_parameters = rng.bit_generator.state
    structures, frame, built_rng = build(**CASES["default"])
    assert built_rng.bit_generator.state == after_parameters
    paint_background(built_rng, frame, Canvas(frame.shape, frame.spacing), 12.0)
    assert built_rng.bit_generator.state != after_parameters


def test_field_of_view_cut_needs_unrotated_anatomy():
    with pytest.raises(ValueError, match="unrotated"):
        make_subject(1, heart=False, rotation_deg=(5.0, 0.0, 0.0), **GRID)


def test_composition_refuses_what_a_builder_must_not_do():
    canvas = Canvas((4, 4, 4), 1.0)
    stray = Structure("stray", masks={"heart": canvas.blank()})
    with pytest.raises(ValueError, match="not in MASK_NAMES"):
        union_of_masks(canvas, [stray])
    with pytest.raises(ValueError, match="repeats truth keys"):
        merge_truth({"seed": 1}, [Structure("a", truth={"x": 1}), Structure("b", truth={"x": 2})])


def test_mask_names_are_totalsegmentator_names():
    vocabulary = {name for task in TASKS.values() for name in task.labels.values()}
    assert set(MASK_NAMES) <= vocabulary and len(set(MASK_NAMES)) == len(MASK_NAMES)
    assert totalseg_name("heart_myocardium") == "heart_myocardium"
    with pytest.raises(ValueError, match="not a TotalSegmentator mask name"):
        totalseg_name("left_ventricle")  # the TAVR label's name, not TotalSegmentator's


def test_cli_help_shows_the_layout_but_not_the_developer_notes():
    from nnunet_tavr.cli import build_parser

    parser, module = build_parser("phantom")
    assert module.__name__ == "nnunet_tavr.phantom.cli"
    assert parser.description.startswith("Write synthetic TotalSegmentator-like subjects")
    assert "OUT_DIR/s0000/truth.json" in parser.description
    assert "Package structure" not in parser.description and "BUILDER_ID" not in parser.description


def test_every_opt_in_builder_together():
    """Cusps, the whole heart and calcium compose: each keeps its truth keys and masks."""
    from nnunet_tavr.phantom import make_subject

    both = make_subject(21, shape=(100, 80, 80), spacing=3.0, cusps=True, aortic_sinuses=True, heart_chambers=True, calcium=True)
    for key in ("hinge_points", "calcium", "heart_chambers"):
        assert key in both.truth, key
    for name in ("right_coronary_cusp", "heart_atrium_left", "heart_ventricle_right", "aorta"):
        assert both.masks[name].any(), name
    assert both.calcium is not None and both.calcium.any()
    alone = make_subject(21, shape=(100, 80, 80), spacing=3.0, cusps=True)
    assert alone.truth["hinge_points"] == both.truth["hinge_points"]  # builders do not disturb each other
