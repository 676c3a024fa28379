"""The geometry module: planes, frames, plane sampling and boxes, against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_tavr.geometry import (
    DegeneratePlane,
    PlaneGrid,
    angle_deg,
    arc_length,
    ball,
    bounding_box,
    box_around,
    box_coordinates,
    box_mm,
    fit_plane,
    grow_box,
    grow_box_mm,
    intersect_boxes,
    offset_box,
    paste,
    plane_frame,
    plane_through,
    reach_voxels,
    relative_box,
    resample_polyline,
    rotation_zyx,
    sample,
    signed_distance,
    smooth_polyline,
    unit,
)


def _plane_points(normal, centre, n=200, noise=0.2, seed=3):
    rng = np.random.default_rng(seed)
    normal = unit(normal)
    e1, e2 = plane_frame(normal)
    a, b, c = (rng.uniform(-10, 10, (n, 1)), rng.uniform(-10, 10, (n, 1)), rng.normal(0, noise, (n, 1)))
    return np.asarray(centre) + a * e1 + b * e2 + c * normal


def test_fit_plane_recovers_a_rotated_plane():
    normal = unit([0.3, -0.8, 0.52])
    pts = _plane_points(normal, [20.0, 30.0, 40.0])
    fit = fit_plane(pts)
    assert abs(abs(np.dot(fit.normal, normal)) - 1) < 1e-3
    assert fit.rms == pytest.approx(0.2, abs=0.05)
    np.testing.assert_allclose(fit.centre, pts.mean(axis=0))
    assert fit.n == len(pts) and fit.singular_values[0] >= fit.singular_values[-1]


def test_fit_plane_refuses_degenerate_input():
    with pytest.raises(DegeneratePlane, match="at least 3"):
        fit_plane(np.zeros((2, 3)))
    with pytest.raises(DegeneratePlane, match="collinear"):
        fit_plane(np.outer(np.arange(10.0), [1.0, 2.0, 3.0]))


def test_plane_through_three_points_orients_counter_clockwise():
    centre, normal = plane_through([0, 0, 0], [0, 1, 0], [0, 0, 1])
    np.testing.assert_allclose(normal, [1, 0, 0])
    np.testing.assert_allclose(centre, [0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(signed_distance([[2.0, 5.0, 5.0], [-1.0, 0, 0]], centre, normal), [2.0, -1.0])
    with pytest.raises(DegeneratePlane):
        plane_through([0, 0, 0], [1, 1, 1], [2, 2, 2])


@pytest.mark.parametrize("normal", [[1, 0, 0], [0, 1, 0], [0.2, 0.3, -0.9], [0.95, 0.1, 0.1]])
def test_plane_frame_is_right_handed_orthonormal(normal):
    n = unit(normal)
    e1, e2 = plane_frame(n)
    frame = np.stack([e1, e2, n])
    np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(frame) == pytest.approx(1.0)
    if abs(n[0]) < 0.9:  # e1 points as superior (array z) as the plane allows
        assert e1[0] > 0 and abs(e1[0]) == pytest.approx(np.sqrt(1 - n[0] ** 2))


def test_angle_deg_oriented_and_not():
    assert angle_deg([1, 0, 0], [0, 1, 0]) == pytest.approx(90)
    assert angle_deg([1, 0, 0], [-1, 0, 0]) == pytest.approx(180)
    assert angle_deg([1, 0, 0], [-1, 0, 0], oriented=False) == pytest.approx(0)


def test_rotation_is_proper_and_rotates_about_the_named_axis():
    r = rotation_zyx((90.0, 0.0, 0.0))
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ [1.0, 0, 0], [1.0, 0, 0], atol=1e-12)  # z axis fixed
    np.testing.assert_allclose(r @ [0, 1.0, 0], [0, 0, 1.0], atol=1e-12)


def test_plane_grid_samples_a_linear_ramp_exactly_on_an_anisotropic_grid():
    spacing = np.array([2.5, 1.0, 0.8])
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((30, 40, 50), spacing)), indexing="ij")
    volume = 1.0 * z + 2.0 * y - 0.5 * x  # value = linear function of mm position
    grid = PlaneGrid.around([30.0, 20.0, 20.0], unit([0.3, 0.4, 0.5]), 6.0, 0.5)
    image = grid.sample(volume, spacing, order=1)
    pts = grid.points()
    np.testing.assert_allclose(image, pts[0] + 2 * pts[1] - 0.5 * pts[2], atol=1e-9)
    assert image.shape == grid.shape == (25, 25)
    np.testing.assert_allclose(grid.centre, [30.0, 20.0, 20.0])
    # a crop sampled with its origin index gives the same values
    crop = (slice(5, 20), slice(10, 35), slice(10, 40))
    np.testing.assert_allclose(grid.sample(volume[crop], spacing, origin_index=[5, 10, 10]), image, atol=1e-9)


def test_plane_grid_spanning_and_pixel_coordinates():
    grid = PlaneGrid.spanning([0.0, 0.0, 0.0], [1.0, 0, 0], [0, 1.0, 0], (-2.0, 2.0), (0.0, 3.0), 0.5)
    assert grid.shape == (9, 7)
    u, v = grid.uv()
    assert (u[0], u[-1], v[0], v[-1]) == (-2.0, 2.0, 0.0, 3.0) == grid.extent()
    np.testing.assert_allclose(grid.to_mm([[0, 0], [8, 6]]), [[-2.0, 0, 0], [2.0, 3.0, 0]])
    np.testing.assert_allclose(grid.points(offset_mm=1.0)[2], 1.0)  # shifted along e1 x e2 = +x
    with pytest.raises(ValueError, match="not square"):
        _ = grid.size


def test_sample_outside_is_cval():
    vol = np.ones((4, 4, 4))
    assert sample(vol, (1, 1, 1), np.array([[10.0], [10.0], [10.0]]), cval=-7.0)[0] == -7.0


def test_boxes():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:4, 5, 7:11] = True
    box = bounding_box(mask)
    assert box == (slice(2, 4), slice(5, 6), slice(7, 11))
    assert bounding_box(np.zeros((3, 3), bool)) is None
    assert bounding_box(np.eye(4, dtype=bool)) == (slice(0, 4), slice(0, 4))  # any dimension
    assert grow_box(box, 3, mask.shape) == (slice(0, 7), slice(2, 9), slice(4, 14))
    assert grow_box(box, (0, 1, 2), mask.shape) == (slice(2, 4), slice(4, 7), slice(5, 13))
    assert intersect_boxes(box, (slice(3, 9), slice(0, 12), slice(0, 8))) == (slice(3, 4), slice(5, 6), slice(7, 8))
    assert intersect_boxes(box, (slice(5, 9),) * 3) is None
    outer = (slice(1, 8), slice(2, 9), slice(3, 12))
    assert offset_box(outer, relative_box(box, outer)) == box
    pasted = paste(mask.shape, box, mask[box])
    assert np.array_equal(pasted, mask)
    assert not paste((2, 2), None, None).any()


def test_boxes_in_mm_on_an_anisotropic_grid():
    spacing = (3.0, 1.0, 0.5)
    # reach: how many voxels a 4.5 mm ball reaches along each axis (the 4.5 = 3 x 1.5 rounding case included)
    np.testing.assert_array_equal(reach_voxels(4.5, (1.5, 1.0, 2.0)), [3, 4, 2])
    box = box_mm([3.0, 2.0, 1.0], [9.0, 4.0, 2.0], spacing, (10, 10, 10))
    assert box == (slice(1, 4), slice(2, 5), slice(2, 5))
    coords = box_coordinates(box, spacing)
    assert coords[0][0] <= 3.0 and coords[0][-1] >= 9.0 - 1e-9
    assert box_mm([100.0, 0, 0], [110.0, 1, 1], spacing, (10, 10, 10)) is None
    assert box_around([6.0, 3.0, 1.5], 1.0, spacing, (10, 10, 10)) == (slice(1, 4), slice(2, 5), slice(1, 6))
    grown = grow_box_mm((slice(5, 6),) * 3, 2.0, spacing, (20, 20, 20))
    assert grown == (slice(4, 7), slice(3, 8), slice(1, 10))


def test_ball_is_a_physical_sphere():
    b = ball(3.0, (3.0, 1.0, 1.0))
    assert b.shape == (3, 7, 7)
    assert b[1, 3, 3] and b[1, 3, 0] and b[0, 3, 3] and not b[0, 0, 0]


def test_polylines():
    pts = np.array([[0.0, 0, 0], [0, 0, 10.0], [0, 10.0, 10.0]])
    np.testing.assert_allclose(arc_length(pts), [0.0, 10.0, 20.0])
    assert arc_length(pts[:1]).tolist() == [0.0]
    out, arc = resample_polyline(pts, 1.0)
    assert len(out) == 21 and arc[-1] == pytest.approx(20.0)
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=0), axis=1)[:10], 1.0)
    line = np.stack([np.zeros(30), np.arange(30.0), 2 * np.arange(30.0)], 1)
    np.testing.assert_allclose(smooth_polyline(line, 3.0), line, atol=1e-9)  # straight stays straight


def test_index_world_round_trip_matches_simpleitk():
    import SimpleITK as sitk

    from nnunet_tavr.geometry import index_to_world, world_to_index

    image = sitk.Image(7, 6, 5, sitk.sitkUInt8)  # x, y, z sizes
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.0, 4.0, 33.0))
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image.SetDirection(direction)
    index_zyx = np.array([3.25, 1.5, 4.0])
    expected = image.TransformContinuousIndexToPhysicalPoint(tuple(index_zyx[::-1].tolist()))
    world = index_to_world(index_zyx, (2.5, 0.8, 0.7), image.GetOrigin(), direction)
    np.testing.assert_allclose(world, expected, atol=1e-9)
    np.testing.assert_allclose(world_to_index(world, (2.5, 0.8, 0.7), image.GetOrigin(), direction), index_zyx, atol=1e-9)
