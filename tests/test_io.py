"""Shared IO: errors name the case and the file, writes are atomic, geometry survives a round trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_tavr.io import Geometry, InputError, atomic_path, nifti_gz_is_complete, read_array, read_mask, write_array, write_json

GEOMETRY = Geometry(shape=(6, 7, 8), spacing=(2.5, 0.8, 0.7), origin=(-10.0, 5.0, 3.0), direction=tuple(np.eye(3)[[1, 0, 2]].ravel().tolist()))


def test_round_trip_keeps_geometry_and_values(tmp_path):
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    write_array(array, GEOMETRY, tmp_path / "a.nii.gz")
    back, geometry = read_array(tmp_path / "a.nii.gz")
    assert np.array_equal(back, array)
    assert geometry.mismatch(GEOMETRY) is None
    image = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    assert image.GetSpacing() == pytest.approx((0.7, 0.8, 2.5))  # SimpleITK's (x, y, z)


def test_mismatch_names_what_differs():
    other = Geometry(GEOMETRY.shape, (2.5, 0.8, 0.9), GEOMETRY.origin, GEOMETRY.direction)
    assert "spacing" in GEOMETRY.mismatch(other)
    assert "shape" in GEOMETRY.mismatch(Geometry((6, 7, 9), GEOMETRY.spacing, GEOMETRY.origin, GEOMETRY.direction))


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_bad_files_raise_input_error_naming_case_and_file(tmp_path, damage):
    path = tmp_path / "ct.nii.gz"
    if damage != "missing":
        write_array(np.ones(GEOMETRY.shape, np.int16), GEOMETRY, path)
        data = path.read_bytes()
        path.write_bytes(b"not an image" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_array(path, case="s0042")
    assert "s0042" in str(err.value) and str(path) in str(err.value)
    if damage == "truncated":
        assert not nifti_gz_is_complete(path)


def test_non_binary_mask_is_warned_and_thresholded(tmp_path):
    mask = np.zeros(GEOMETRY.shape, np.uint8)
    mask[1, 1, 1], mask[2, 2, 2] = 1, 7
    write_array(mask, GEOMETRY, tmp_path / "m.nii.gz")
    warnings = []
    binary, _ = read_mask(tmp_path / "m.nii.gz", case="s1", warn=warnings.append)
    assert binary.sum() == 2 and binary.dtype == bool
    assert len(warnings) == 1 and "not binary" in warnings[0] and "s1" in warnings[0]


def test_failed_write_leaves_neither_target_nor_temp(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_json({"a": np.float32(1.5), "b": np.arange(2)}, target)
    assert target.read_text().count("1.5") == 1 and list(tmp_path.iterdir()) == [target]


def test_outputs_get_the_usual_permissions(tmp_path):
    write_json({}, tmp_path / "p.json")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_write_array_refuses_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        write_array(np.zeros((1, 2, 3)), GEOMETRY, tmp_path / "x.nii.gz")
    assert not any(tmp_path.iterdir())
