"""C-arm geometry (nnunet_tavr.carm): signs of the angulations, cone-beam projection of a sphere and
of a plane seen edge-on (rendered with the fluoro projector), S-curve, cusp views, LPS <-> arrays."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_tavr.carm import (
    Angulation,
    Projection,
    angulation,
    coplanar,
    cusp_views,
    detector_axes,
    en_face,
    nearest_to_ap,
    off_plane_deg,
    s_curve,
    view_direction,
)
from nnunet_tavr.fluoro.projector import project
from nnunet_tavr.geometry import array_to_world, unit, vector_to_array, vector_to_world, world_to_array
from nnunet_tavr.io import Geometry

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(half_mm=60.0, spacing=0.5, centre=(0.0, 0.0, 0.0), direction=IDENTITY):
    """A cube of ``2 half_mm`` around an LPS point."""
    n = int(round(2 * half_mm / spacing)) + 1
    d = np.asarray(direction, float).reshape(3, 3)
    origin = np.asarray(centre, float) - d @ np.full(3, half_mm)  # index (0, 0, 0) at -half along every index axis
    return Geometry((n, n, n), (spacing,) * 3, tuple(origin), tuple(direction))


def _coords(geometry):
    """LPS coordinates (..., 3) of every voxel centre."""
    idx = np.stack(np.meshgrid(*[np.arange(k) * s for k, s in zip(geometry.shape, geometry.spacing)], indexing="ij"), -1)
    return array_to_world(idx, geometry)


def _render(volume, geometry, projection, reduce="sum"):
    pixels = world_to_array(projection.pixel_points(), geometry)
    return project(volume, geometry.spacing, world_to_array(projection.source, geometry), pixels, reduce=reduce)[0]


def _sphere(geometry, centre, radius):
    """Partial-volume sphere (voxels at the edge get their covered fraction, by the signed distance)."""
    d = np.linalg.norm(_coords(geometry) - centre, axis=-1)
    return np.clip(radius - d + 0.5 * geometry.spacing[0], 0, geometry.spacing[0]) / geometry.spacing[0]


# ------------------------------------------------------------------------------------ conventions


def test_angulation_signs_follow_dicom_lps():
    np.testing.assert_allclose(view_direction(0, 0), [0, -1, 0], atol=1e-12)  # AP: detector anterior
    np.testing.assert_allclose(view_direction(90, 0), [1, 0, 0], atol=1e-12)  # LAO 90: detector at the patient's left
    np.testing.assert_allclose(view_direction(-90, 0), [-1, 0, 0], atol=1e-12)  # RAO 90: patient's right
    np.testing.assert_allclose(view_direction(0, 90), [0, 0, 1], atol=1e-12)  # CRA 90: towards the head
    np.testing.assert_allclose(view_direction(0, -90), [0, 0, -1], atol=1e-12)  # CAU 90: towards the feet
    assert Angulation(30, -20).label() == "LAO 30 CAU 20" and Angulation(-12.5, 7).label(1) == "RAO 12.5 CRA 7.0"
    assert Angulation(0, 0).label() == "AP"


@pytest.mark.parametrize("primary,secondary", [(0, 0), (30, 20), (-45, -30), (89, 10), (-120, 60), (170, -5)])
def test_angulation_direction_round_trip_and_detector_axes(primary, secondary):
    back = angulation(view_direction(primary, secondary))
    assert back.primary == pytest.approx(primary, abs=1e-9) and back.secondary == pytest.approx(secondary, abs=1e-9)
    c, r, d = detector_axes(primary, secondary)
    np.testing.assert_allclose(np.stack([c, r, d]) @ np.stack([c, r, d]).T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.cross(c, r), -d, atol=1e-12)  # seen from the detector, looking back at the source


def test_known_case_ap_image_has_patient_left_right_and_head_up():
    p = Projection.at(Angulation(0, 0), [0, 0, 0], sdd=1100, pixel_mm=0.5, shape=(101, 101))
    centre, _ = p.project(np.zeros(3))
    np.testing.assert_allclose(centre, [50, 50])
    (left, head), _ = p.project(np.array([[20.0, 0, 0], [0, 0, 20.0]]))
    assert left[1] > 50 + 30 and left[0] == pytest.approx(50)  # patient's left -> image right
    assert head[0] < 50 - 30 and head[1] == pytest.approx(50)  # head -> image top
    # LAO 90 (detector on the patient's left): anterior structures appear on the image's left
    (front,), _ = Projection.at(Angulation(90, 0), [0, 0, 0], 1100, 0.5, (101, 101)).project(np.array([[0, -20.0, 0]]))
    assert front[1] < 50 - 30


@pytest.mark.parametrize("angle", [Angulation(0, 0), Angulation(30, 20), Angulation(-60, -25)])
def test_known_case_detector_side_magnifies_less(angle):
    """Spheres 100 mm towards the detector and towards the source both project onto the centre;
    the one on the detector side (along +d, where LAO / CRA point) is magnified less, by exactly
    (sid - 100) / (sid + 100)."""
    d = angle.direction
    p = Projection.at(angle, [0, 0, 0], sdd=1100, pixel_mm=0.5, shape=(161, 161), sid=785)
    radii = {}
    for side in (1, -1):
        g = _grid(half_mm=14.0, spacing=0.5, centre=100 * side * d)  # a small grid around each sphere
        mask = _render(_sphere(g, 100 * side * d, 12.0), g, p, "max") >= 0.5
        rows, cols = np.nonzero(mask)
        assert rows.mean() == pytest.approx(80, abs=0.3) and cols.mean() == pytest.approx(80, abs=0.3)
        radii[side] = np.sqrt(mask.sum() / np.pi)
    assert radii[1] / radii[-1] == pytest.approx((785 - 100) / (785 + 100), rel=0.03)


# ------------------------------------------------------------------------------------ projection


@pytest.mark.parametrize("angle,centre", [(Angulation(0, 0), (10.0, -5.0, 8.0)), (Angulation(35, 25), (-12.0, 6.0, -4.0)),
                                          (Angulation(-50, -30), (4.0, 14.0, 10.0))])
def test_sphere_projects_to_disc_at_expected_position_and_magnification(angle, centre):
    radius = 10.0
    centre = np.asarray(centre)
    g = _grid(half_mm=12.0, spacing=0.4, centre=centre)
    p = Projection.at(angle, [0, 0, 0], sdd=1150, pixel_mm=0.25, shape=(321, 321), sid=785)
    volume = _sphere(g, centre, radius)
    mask = _render(volume, g, p, "max") >= 0.5
    line = _render(volume, g, p, "sum")
    (expected,), (depth,) = p.project(centre[None])
    rows, cols = np.nonzero(mask)
    assert rows.mean() == pytest.approx(expected[0], abs=0.25) and cols.mean() == pytest.approx(expected[1], abs=0.25)
    dist = np.linalg.norm(centre - p.source)
    r_expected = p.sdd * radius / np.sqrt(dist**2 - radius**2) / p.detector_pixel_mm  # tangent cone, pixels
    assert np.sqrt(mask.sum() / np.pi) == pytest.approx(r_expected, rel=0.015)
    assert p.magnification == pytest.approx(1150 / 785)
    # the chord through the centre is the diameter
    assert line[int(round(expected[0])), int(round(expected[1]))] == pytest.approx(2 * radius, rel=0.02)


def test_projection_matrix_matches_project():
    p = Projection.at(Angulation(22, -13), [3.0, -4.0, 10.0], sdd=1080, pixel_mm=0.3, shape=(512, 400))
    pts = np.random.default_rng(0).uniform(-80, 80, (20, 3))
    homogeneous = np.c_[pts, np.ones(len(pts))] @ p.matrix.T
    pix, depth = p.project(pts)
    np.testing.assert_allclose(homogeneous[:, 1] / homogeneous[:, 2], pix[:, 0], atol=1e-9)
    np.testing.assert_allclose(homogeneous[:, 0] / homogeneous[:, 2], pix[:, 1], atol=1e-9)
    np.testing.assert_allclose(homogeneous[:, 2], depth, atol=1e-9)
    # pixel_points lie on the rays: they project onto themselves
    corner = p.pixel_points([0, 511], [0, 399])
    back, _ = p.project(corner.reshape(-1, 3))
    np.testing.assert_allclose(back, [[0, 0], [0, 399], [511, 0], [511, 399]], atol=1e-9)


# ------------------------------------------------------------------------------------ S-curve


@pytest.mark.parametrize("normal", [(-0.35, -0.55, 0.76), (0.2, -0.3, 0.93), (-0.6, 0.1, 0.79), (0.0, -0.7, -0.7)])
def test_s_curve_views_are_perpendicular_to_the_normal(normal):
    n = unit(normal)
    primary = np.linspace(-90, 90, 37)
    d = view_direction(primary, s_curve(n, primary))
    np.testing.assert_allclose(d @ n, 0, atol=1e-12)
    np.testing.assert_allclose(s_curve(-n, primary), s_curve(n, primary))  # the plane, not the normal's sign
    assert off_plane_deg(n, coplanar(n, 17.0)) == pytest.approx(0, abs=1e-9)
    assert off_plane_deg(n, en_face(n)) == pytest.approx(90, abs=1e-9)
    near = nearest_to_ap(n)
    assert off_plane_deg(n, near) < 0.01 and near.primary**2 + near.secondary**2 <= 1e-6 + min(
        a**2 + s_curve(n, a) ** 2 for a in np.arange(-90, 90.01, 1.0))


def test_known_case_typical_annulus_gives_rao_caudal_to_lao_cranial():
    """An annulus normal pointing superior, anterior and to the patient's right (as the phantoms'
    and most patients'): the S-curve rises from RAO-caudal to LAO-cranial, and AP is caudal."""
    n = unit([-0.35, -0.55, 0.76])
    assert s_curve(n, -30) < s_curve(n, 0) < 0 < s_curve(n, 90)
    assert np.all(np.diff(s_curve(n, np.linspace(-20, 90, 50))) > 0)


@pytest.mark.parametrize("primary", [-30.0, 0.0, 25.0])
def test_plane_seen_at_s_curve_angulation_projects_to_a_line(primary):
    """A thin disc (radius 12 mm, 1 mm thick) through the isocentre, seen on its S-curve, projects
    to a segment one to two pixels wide; 12 degrees off the curve it is an ellipse."""
    g = _grid(half_mm=13.0, spacing=0.25)
    n = unit([-0.35, -0.55, 0.76])
    xyz = _coords(g)
    disc = ((np.abs(xyz @ n) <= 0.5) & (np.linalg.norm(xyz - np.outer(xyz @ n, n).reshape(xyz.shape), axis=-1) <= 12.0)).astype(np.float32)

    def widths(angle):
        p = Projection.at(angle, [0, 0, 0], sdd=1100, pixel_mm=0.2, shape=(181, 181))
        rows, cols = np.nonzero(_render(disc, g, p, "max") >= 0.5)
        pts = np.stack([rows, cols], 1) - [rows.mean(), cols.mean()]
        ev = np.linalg.eigh(np.cov(pts.T))[1]
        extent = np.ptp(pts @ ev, axis=0)  # minor, major (pixels)
        return extent * p.pixel_mm  # mm at the isocentre

    on = coplanar(n, primary)
    minor, major = widths(on)
    assert major == pytest.approx(24.0, abs=1.0) and minor <= 1.6  # the 1 mm slab seen edge-on
    minor_off, _ = widths(Angulation(on.primary, on.secondary + 12.0))
    assert minor_off == pytest.approx(24.0 * np.sin(np.radians(12.0)) + 1.0, abs=1.0)


# ------------------------------------------------------------------------------------ cusp views


def _hinges(n, centre=(5.0, -10.0, 40.0), radius=12.0, twist=0.0):
    """Three nadirs 120 degrees apart in the plane of ``n``: right cusp anterior-right, left cusp
    posterior-left, non-coronary posterior-right (the anatomy's order, counter-clockwise from above)."""
    n = unit(n)
    e1 = unit(np.cross(n, [0, 0, 1]) if abs(n[2]) < 0.99 else [1, 0, 0])
    e2 = np.cross(n, e1)
    angles = np.radians(np.array([0.0, 120.0, 240.0]) + twist)
    pts = [np.asarray(centre) + radius * (np.cos(a) * e1 + np.sin(a) * e2) for a in angles]
    # name them by where they lie: the most anterior is the right cusp, then left, non clockwise
    order = np.argsort([p[1] for p in pts])
    right = pts[order[0]]
    rest = [pts[i] for i in order[1:]]
    left, non = sorted(rest, key=lambda p: -p[0])  # patient's left = +x
    return right, left, non


@pytest.mark.parametrize("normal,twist", [((-0.35, -0.55, 0.76), 0.0), ((0.1, -0.4, 0.9), 40.0), ((-0.5, -0.2, 0.84), 75.0)])
def test_three_cusp_and_cusp_overlap_views(normal, twist):
    right, left, non = _hinges(normal, twist=twist)
    views = cusp_views(right, left, non)
    plane_normal = unit(np.cross(left - right, non - right))
    assert off_plane_deg(plane_normal, views.three_cusp) < 1e-9 and off_plane_deg(plane_normal, views.cusp_overlap) < 1e-9
    assert views.three_cusp.direction[1] <= 0 and views.cusp_overlap.direction[1] <= 0  # detector in front
    for view in (views.three_cusp, views.cusp_overlap):
        p = Projection.at(view, views.centre, sdd=1100, pixel_mm=0.2, shape=(401, 401))
        (r, l, nc), _ = p.project(np.stack([right, left, non]))
        r, l, nc = (x * p.pixel_mm for x in (r, l, nc))  # mm at the isocentre
        # edge-on: the plane contains the source, so the three nadirs lie on one image line
        u, v = l - r, nc - r
        assert abs(u[0] * v[1] - u[1] * v[0]) / max(np.linalg.norm(u), np.linalg.norm(v)) < 1e-6
        # The views are directions (the parallel-beam definition planning uses); the cone beam
        # shifts points at different depths by at most ~0.2 mm here.
        if view is views.three_cusp:
            assert np.linalg.norm(r - (l + nc) / 2) < 0.3  # right cusp midway between the others
            assert np.linalg.norm(l - nc) > 15
        else:
            assert np.linalg.norm(r - l) < 0.3  # right and left superimposed
            assert np.linalg.norm(nc - r) > 15  # the non-coronary cusp apart


def test_cusp_views_refuse_collinear_points():
    with pytest.raises(ValueError, match="collinear"):
        cusp_views([0, 0, 0], [1, 1, 1], [2, 2, 2])


# ------------------------------------------------------------------------------------ frames


def test_world_array_round_trip_with_oblique_direction():
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    g = Geometry((10, 20, 30), (2.0, 0.7, 0.9), (-100.0, 50.0, 20.0), tuple(rot.ravel()))
    pts = np.random.default_rng(2).uniform(-50, 50, (7, 3))
    np.testing.assert_allclose(array_to_world(world_to_array(pts, g), g), pts, atol=1e-9)
    v = unit([0.3, -0.2, 0.9])
    np.testing.assert_allclose(vector_to_world(vector_to_array(v, g), g), v, atol=1e-12)
    # SimpleITK's own rule for one index
    import SimpleITK as sitk

    image = sitk.Image(30, 20, 10, sitk.sitkUInt8)
    g.apply_to(image)
    idx = (3, 5, 7)  # (x, y, z) index
    zyx_mm = np.array(idx[::-1]) * np.asarray(g.spacing)
    np.testing.assert_allclose(array_to_world(zyx_mm, g), image.TransformIndexToPhysicalPoint(idx), atol=1e-9)
