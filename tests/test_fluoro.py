"""The angiography renderer: masks are the projected root, contrast darkens them, frames are
deterministic, independent of how the CT array is stored, resumable, and the CLI reads every input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_tavr.geometry import array_to_world
from nnunet_tavr.fluoro.anatomy import prepare_case
from nnunet_tavr.fluoro.render import RenderSettings, frame_projection, render_frame, sample_frame
from nnunet_tavr.io import Geometry
from nnunet_tavr.labels import LABELS
from nnunet_tavr.phantom import make_subject

SMALL = RenderSettings(shape=(128, 128), pixel_mm=1.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom():
    return make_subject(seed=3, shape=(134, 107, 107), spacing=2.25)


@pytest.fixture(scope="module")
def anatomy(phantom):
    return prepare_case("s3", phantom.ct, phantom.labels, phantom.geometry)


def _frames(anatomy, n=3, seed=0, settings=SMALL):
    rng = np.random.default_rng(seed)
    return [render_frame(anatomy, sample_frame(rng, anatomy, settings), settings, rng) for _ in range(n)]


def test_annulus_plane_and_sinus_point_follow_the_anatomy(phantom, anatomy):
    truth_n = np.asarray(phantom.truth["annulus_normal"])
    assert np.degrees(np.arccos(abs(anatomy.annulus_normal @ truth_n))) < 3.0
    assert np.linalg.norm(anatomy.annulus_centre - np.asarray(phantom.truth["annulus_center_mm"])) < 3.0
    index = tuple(np.rint(anatomy.sinus_point / anatomy.spacing).astype(int))
    assert phantom.labels[index] in (LABELS["aortic_root"], LABELS["valve"])  # the pigtail rests in the root
    # the catheter runs inside the aorta for most of its length
    idx = np.rint(anatomy.catheter / anatomy.spacing).astype(int)
    inside = np.isin(phantom.labels[tuple(idx.T)], [LABELS["aorta"], LABELS["aortic_root"], LABELS["valve"]])
    assert inside.mean() > 0.9


def test_mask_is_the_projection_of_the_root_object(anatomy):
    from scipy.spatial import cKDTree

    m = anatomy.mask_object
    voxels = np.argwhere(m.data[0].numpy() >= 0.5) * anatomy.spacing + m.origin
    for frame in _frames(anatomy):
        pix, depth = frame.projection.project(array_to_world(voxels, anatomy.geometry))
        inside = (pix >= 0).all(1) & (pix <= np.asarray(frame.mask.shape) - 1).all(1)
        hit = frame.mask[tuple(np.rint(pix[inside]).astype(int).T)]
        assert hit.mean() > 0.99  # every voxel of the object projects into the mask
        footprint = anatomy.spacing.max() * frame.projection.sdd / depth.min() / frame.projection.detector_pixel_mm
        far, _ = cKDTree(pix).query(np.argwhere(frame.mask))
        assert far.max() <= footprint  # and the mask holds nothing else
        assert frame.record(anatomy)["mask_pixels"] == frame.mask.sum() > 100


def test_bolus_darkens_the_root_and_frames_are_8_bit(anatomy):
    from scipy import ndimage

    for frame in _frames(anatomy):
        assert frame.image.dtype == np.uint8 and frame.image.shape == SMALL.shape
        ring = ndimage.binary_dilation(frame.mask, iterations=6) & ~ndimage.binary_dilation(frame.mask, iterations=2)
        assert frame.image[frame.mask].mean() < frame.image[ring].mean() - 10  # contrast is dark


def test_frames_sample_around_the_coplanar_view_and_are_deterministic(anatomy):
    from nnunet_tavr.carm import off_plane_deg

    settings = RenderSettings(shape=(64, 64), pixel_mm=2.0, off_curve_deg=3.0, primary_spread_deg=20.0)
    rng = np.random.default_rng(7)
    params = [sample_frame(rng, anatomy, settings) for _ in range(60)]
    off = np.array([off_plane_deg(anatomy.normal_world, p.angle) for p in params])
    assert np.median(off) < 4.0 and off.max() < 15.0
    primaries = np.array([p.angle.primary for p in params])
    assert np.ptp(primaries) > 25 and np.ptp(primaries) <= 40
    a, b = _frames(anatomy, 2, seed=5, settings=settings), _frames(anatomy, 2, seed=5, settings=settings)
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b))


def test_frames_do_not_depend_on_how_the_ct_is_stored(phantom, anatomy):
    """The same anatomy with x and y index axes reversed (direction diag(-1, -1, 1)) renders the
    same frames: every geometric step goes through the world (LPS) frame."""
    ct, labels = phantom.ct[:, ::-1, ::-1].copy(), phantom.labels[:, ::-1, ::-1].copy()
    sz, sy, sx = phantom.spacing
    nz, ny, nx = phantom.ct.shape
    origin = np.asarray(phantom.origin) + [(nx - 1) * sx, (ny - 1) * sy, 0.0]
    geometry = Geometry(phantom.ct.shape, phantom.spacing, tuple(origin), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    flipped = prepare_case("s3", ct, labels, geometry)
    np.testing.assert_allclose(flipped.centre_world, anatomy.centre_world, atol=1e-6)
    a, b = _frames(anatomy, 2, seed=11), _frames(flipped, 2, seed=11)
    for x, y in zip(a, b):
        assert x.params.angle.secondary == pytest.approx(y.params.angle.secondary, abs=1e-9)
        assert x.params.photons == y.params.photons and x.params.pan_mm == y.params.pan_mm
        assert (x.mask != y.mask).sum() <= 0.02 * x.mask.sum()
        assert np.abs(x.image.astype(int) - y.image.astype(int)).mean() < 3.0


def test_projection_puts_the_annulus_near_the_centre(anatomy):
    frame = _frames(anatomy, 1)[0]
    centre, _ = frame_projection(anatomy, frame.params, SMALL).project(anatomy.centre_world)
    pan_px = np.abs(np.asarray(frame.params.pan_mm)).max() / SMALL.pixel_mm
    assert np.abs(centre - (np.asarray(SMALL.shape) - 1) / 2).max() <= pan_px + 1e-6


# -------------------------------------------------------------------------------------------- CLI


def _write_nnunet_dataset(root, phantoms):
    from nnunet_tavr.io import write_array

    folder = root / "Dataset301_TAVR"
    for case, p in phantoms.items():
        write_array(p.ct, p.geometry, folder / "imagesTr" / f"{case}_0000.nii.gz")
        write_array(p.labels, p.geometry, folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz", "channel_names": {"0": "CT"}}))
    (folder / "manifest.csv").write_text("case,group\n" + "".join(f"{c},patient_{c[-1]}\n" for c in phantoms))
    return folder


def test_cli_renders_nnunet_dataset_resumes_and_reports(tmp_path, phantom):
    from nnunet_tavr.cli import main

    folder = _write_nnunet_dataset(tmp_path, {"case_a": phantom})
    out = tmp_path / "frames"
    args = ["fluoro", str(folder), "-o", str(out), "--frames", "2", "--matrix", "64", "--pixel-mm", "2", "--quiet"]
    assert main(args) == 0
    record = json.loads((out / "case_a" / "frames.json").read_text())
    assert record["status"] == "rendered" and record["patient"] == "patient_a" and len(record["frames"]) == 2
    frame = record["frames"][0]
    assert frame["projection"]["pixel_mm_at_isocentre"] == 2.0 and len(frame["projection"]["projection_matrix"]) == 3
    assert "aortic root" in record["mask_definition"] and (out / "case_a" / "preview.png").is_file()
    from nnunet_tavr.io import read_array

    image, geometry = read_array(out / "case_a" / frame["image"])
    assert image.shape == (64, 64) and geometry.spacing == pytest.approx((2.0, 2.0))
    mtime = (out / "case_a" / "frames.json").stat().st_mtime_ns
    assert main(args) == 0  # a rerun resumes
    assert (out / "case_a" / "frames.json").stat().st_mtime_ns == mtime
    assert main(args[:-1] + ["--frames", "3", "--quiet"]) == 0  # another setting redoes the case
    assert len(json.loads((out / "case_a" / "frames.json").read_text())["frames"]) == 3


def test_cli_derives_labels_excludes_chestless_and_refuses_non_tavr(tmp_path, capsys):
    from nnunet_tavr.cli import main
    from nnunet_tavr.phantom import write_dataset

    phantoms = tmp_path / "phantoms"
    write_dataset(phantoms, 2, seed=0, shape=(100, 80, 80), spacing=3.0, no_heart=[1], progress=False)
    out = tmp_path / "frames"
    code = main(["fluoro", str(phantoms), "-o", str(out), "--frames", "1", "--matrix", "48", "--pixel-mm", "3",
                 "--valve-mm", "9", "--annulus-mm", "3", "--quiet", "--no-preview"])
    assert code == 1  # one case excluded
    assert json.loads((out / "s0000" / "frames.json").read_text())["status"] == "rendered"
    excluded = json.loads((out / "s0001" / "frames.json").read_text())
    assert excluded["status"] == "excluded" and excluded["reason"]
    assert "excluded" in (out / "fluoro.csv").read_text()

    bad = tmp_path / "Dataset999_X"
    (bad / "imagesTr").mkdir(parents=True)
    (bad / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}))
    assert main(["fluoro", str(bad), "-o", str(tmp_path / "o2")]) == 2
    assert "annulus" in capsys.readouterr().err
    assert main(["fluoro", str(phantoms), "-o", str(phantoms / "inside")]) == 2  # never inside the input


def test_hinge_points_give_the_three_cusp_reference_and_place_the_pigtail(tmp_path, phantom, anatomy):
    """With hinge points the frames are sampled around the three-cusp view and the pigtail rests
    by the non-coronary nadir; the CLI reads them from a folder of <case>.json."""
    from nnunet_tavr.carm import cusp_views
    from nnunet_tavr.geometry import world_to_array
    from nnunet_tavr.cli import main
    from nnunet_tavr.fluoro.render import reference_view

    n, c = anatomy.annulus_normal, anatomy.annulus_centre
    e1 = np.cross(n, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    hinges = {k: array_to_world(c + 0.9 * anatomy.annulus_radius_mm * (np.cos(a) * e1 + np.sin(a) * e2), anatomy.geometry).tolist()
              for k, a in zip(("RCC", "LCC", "NCC"), np.radians([90.0, 210.0, 330.0]))}
    with_hinges = prepare_case("s3", phantom.ct, phantom.labels, phantom.geometry, hinge_points_world=hinges)
    view, why = reference_view(with_hinges)
    assert "three-cusp" in why
    expected = cusp_views(hinges["RCC"], hinges["LCC"], hinges["NCC"]).three_cusp
    assert (view.primary, view.secondary) == pytest.approx((expected.primary, expected.secondary))
    nadir = world_to_array(np.asarray(hinges["NCC"]), anatomy.geometry)
    assert np.linalg.norm(with_hinges.sinus_point - nadir) < 0.4 * anatomy.annulus_radius_mm + 5.0
    assert "hinge points" in with_hinges.sinus_rule

    folder = _write_nnunet_dataset(tmp_path, {"case_a": phantom})
    (tmp_path / "hinges").mkdir()
    (tmp_path / "hinges" / "case_a.json").write_text(json.dumps({"rcc": hinges["RCC"], "lcc": hinges["LCC"], "ncc": hinges["NCC"]}))
    out = tmp_path / "frames"
    assert main(["fluoro", str(folder), "-o", str(out), "--frames", "1", "--matrix", "48", "--pixel-mm", "3",
                 "--hinge-points", str(tmp_path / "hinges"), "--quiet", "--no-preview"]) == 0
    record = json.loads((out / "case_a" / "frames.json").read_text())
    assert record["cusp_views"]["three_cusp"]["primary_deg"] == pytest.approx(expected.primary)
    assert "three-cusp" in record["reference_view"]["why"]
