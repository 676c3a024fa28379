"""Image and file IO shared by every part of nnunet-tavr.

Conventions (the same as nnU-Net's ``SimpleITKIO``):

- Arrays are in SimpleITK's ``GetArrayFromImage`` order, **(z, y, x)**.
- ``spacing`` is given **per array axis** in mm, i.e. ``image.GetSpacing()[::-1]``.
- The "physical frame of the arrays" used by the geometry code is ``index * spacing`` (mm); it is
  an isometry of the scanner frame, so distances, areas and angles are the same in both.

Every writer is atomic: it writes a temporary file next to the target and renames it, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from nnunet_tavr.errors import ImplausibleGeometry, InputError, MissingFile, Unreadable

__all__ = ["Geometry", "InputError", "read_image", "read_geometry", "read_array", "read_mask", "atomic_path",
           "write_array", "write_text", "write_json", "nifti_gz_is_complete"]


#: Voxel edge lengths a CT (or a 2-D frame at the isocentre) can have, per axis (mm).
SPACING_RANGE_MM = (0.01, 20.0)
#: The largest image read (voxels): a 1024 x 1024 x 2000 CT is 2.1e9.
MAX_VOXELS = 2_200_000_000


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of an image: what must agree between a CT and its masks.

    ``spacing`` is per array axis (z, y, x); ``origin`` and ``direction`` are SimpleITK's (x, y, z).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image) -> "Geometry":
        return cls(
            shape=tuple(int(s) for s in image.GetSize()[::-1]),
            spacing=tuple(float(s) for s in image.GetSpacing()[::-1]),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    def mismatch(self, other: "Geometry", tol: float = 1e-3) -> str | None:
        """Describe how ``other`` differs from this grid, or ``None`` when they agree."""
        if self.shape != other.shape:
            return f"shape {other.shape} != {self.shape}"
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, atol=tol, rtol=tol):
                return f"{name} {_numbers(b)} != {_numbers(a)}"
        return None

    def check_plausible(self, path=None, case: str | None = None) -> "Geometry":
        """This grid, or :class:`ImplausibleGeometry` when no CT has it.

        Every voxel edge must lie in :data:`SPACING_RANGE_MM` (per axis) and the image must have
        at most :data:`MAX_VOXELS` voxels: work is bounded by voxels, and a header with a spacing
        of 1e6 mm or 300 mm between slices is a broken file, not a scan.
        """
        where = f"case {case}: " if case else ""
        low, high = SPACING_RANGE_MM
        for axis, value in zip("zyx"[-len(self.spacing):], self.spacing):
            if not (np.isfinite(value) and low <= value <= high):
                raise ImplausibleGeometry(f"{where}{path}: voxel size {value:g} mm along {axis} is outside {low:g}-{high:g} mm, "
                                          "which no CT has (is the header's spacing right?)")
        if int(np.prod(self.shape, dtype=np.int64)) > MAX_VOXELS:
            raise ImplausibleGeometry(f"{where}{path}: {int(np.prod(self.shape, dtype=np.int64)):,} voxels {self.shape} "
                                      f"is more than {MAX_VOXELS:,}")
        return self

    def apply_to(self, image) -> None:
        image.SetSpacing(tuple(reversed(self.spacing)))
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)


def _numbers(values) -> str:
    """``(1.5, 0.7, 0.7)``: plain numbers for messages (numpy 2 would print ``np.float64(1.5)``)."""
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.ravel(values)) + ")"


def read_image(path: str | os.PathLike, case: str | None = None):
    """Read an image with SimpleITK; any failure becomes an :class:`InputError` naming the file.

    A truncated ``.nii.gz`` is an error too: SimpleITK would silently fill the missing voxels with
    zeros (see :func:`nifti_gz_is_complete`).
    """
    reader, _ = _header(path, case)  # the grid is checked before any voxel is allocated
    where = f"case {case}: " if case else ""
    try:
        image = reader.Execute()
    except Exception as exc:  # SimpleITK raises RuntimeError with a long C++ trace
        raise Unreadable(f"{where}cannot read {path}: {_sitk_reason(exc)}") from exc
    if Path(path).name.endswith(".nii.gz") and not nifti_gz_is_complete(path):
        raise Unreadable(f"{where}cannot read {path}: the gzip stream is truncated (incomplete download or copy?)")
    return image


def read_geometry(path: str | os.PathLike, case: str | None = None) -> Geometry:
    """The voxel grid of an image file, reading only its header (checked: :meth:`Geometry.check_plausible`)."""
    return _header(path, case)[1]


def _header(path, case):
    import SimpleITK as sitk

    path = Path(path)
    where = f"case {case}: " if case else ""
    if not path.is_file():
        raise MissingFile(f"{where}file not found: {path}" if not path.is_dir() else f"{where}{path} is a folder, not an image file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        raise Unreadable(f"{where}cannot read {path}: {_sitk_reason(exc)}") from exc
    return reader, Geometry.of(reader).check_plausible(path, case)


def _sitk_reason(exc: BaseException) -> str:
    """The useful line of a SimpleITK exception.

    Its first line is C++ noise ("Exception thrown in SimpleITK ImageFileReader_Execute:
    .../sitkImageReaderBase.cxx:99:"); the reason is the last line, after "ERROR: ".
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    return last.split("ERROR: ", 1)[1] if "ERROR: " in last else last


def nifti_gz_is_complete(path: str | os.PathLike) -> bool:
    """Whether a ``.nii.gz`` file holds its whole voxel data.

    Fast path: the gzip trailer stores the uncompressed size (mod 2**32), which must equal the
    NIfTI header's ``vox_offset`` plus the voxel bytes. Only when they differ (a truncated file, or
    a legal multi-member gzip) is the stream decompressed to be sure.
    """
    import gzip
    import struct
    import zlib

    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(540)
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
    except (OSError, EOFError, zlib.error):
        return False
    expected = None
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = struct.unpack(endian + "f", header[108:112])[0]
            expected = int(offset) + int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64)) * bitpix // 8
        elif len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[12:14])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            expected = int(offset) + int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64)) * bitpix // 8
        if expected is not None:
            break
    if expected is not None and expected % 2**32 == isize:
        return True
    try:  # slow path: decompress everything
        with gzip.open(path, "rb") as f:
            total = 0
            while chunk := f.read(1 << 24):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return False
    return expected is None or total >= expected


def read_array(path: str | os.PathLike, case: str | None = None, dtype=None) -> tuple[np.ndarray, Geometry]:
    """Read an image as a (z, y, x) array and its :class:`Geometry`."""
    import SimpleITK as sitk

    image = read_image(path, case)
    array = sitk.GetArrayFromImage(image)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, Geometry.of(image)


def read_mask(path: str | os.PathLike, case: str | None = None, warn=None) -> tuple[np.ndarray, Geometry]:
    """Read a binary mask; values > 0 are foreground.

    Non-binary masks are accepted (``> 0`` is foreground) and reported through ``warn(message)``.
    """
    array, geometry = read_array(path, case)
    if warn is not None and array.size:
        values = np.unique(array[array != 0][:1_000_000])
        if values.size and not np.array_equal(values, [1]):
            where = f"case {case}: " if case else ""
            warn(f"{where}{path} is not binary (values {values[:5].tolist()}...); using > 0 as foreground")
    return array > 0, geometry


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (.nii.gz) so writers that pick the format by extension still work.
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_array(array: np.ndarray, geometry: Geometry, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a (z, y, x) array on ``geometry``'s grid, atomically."""
    import SimpleITK as sitk

    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match the geometry {geometry.shape} for {path}")
    image = sitk.GetImageFromArray(array)
    geometry.apply_to(image)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike, what: str):
    """The JSON document in ``path``; ``what`` names it in the errors (``"the label mapping"``):
    :class:`MissingFile` when it cannot be read, :class:`InputError` when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise MissingFile(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from None


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON atomically (numpy scalars and arrays are converted)."""
    return write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display is needed or opened)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it (figures hold a lot of memory)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


def as_label_map(array: np.ndarray, where: str, error: type = InputError) -> np.ndarray:
    """``array`` as an integer label map, or ``error`` naming ``where`` (e.g. ``"case c1: seg.nii.gz"``).

    Float images holding whole numbers (some tools write label maps as float) are converted;
    fractional or negative values are refused: such a file is not a label map.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise error(f"{where} has non-integer values: not a label map")
        array = rounded.astype(np.int32)
    if array.size and array.min() < 0:
        raise error(f"{where} has negative values: not a label map")
    return array
