"""Writing a case's image into the dataset: the input CT unchanged, or an array.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels become 0), so a
verbatim copy decompresses the stream as it goes and refuses one that ends early or fails its CRC.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from nnunet_tavr.errors import Unreadable
from nnunet_tavr.io import atomic_path, write_array

NIFTI_GZ = ".nii.gz"


def copy_image(source: Path, target: Path, case: str) -> None:
    """The image unchanged: a byte copy of a ``.nii.gz`` (gzip stream verified), otherwise the image
    re-written as ``.nii.gz`` (same voxels and geometry)."""
    source = Path(source)
    if source.name.endswith(NIFTI_GZ):
        with atomic_path(target) as tmp:
            copy_verified_gzip(source, tmp, case)
    else:
        from nnunet_tavr.io import read_image

        import SimpleITK as sitk

        image = read_image(source, case)
        with atomic_path(target) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def write_image(case_output, target: Path) -> None:
    """The image of a :class:`~nnunet_tavr.dataset_conversion.scheme.CaseOutput` at ``target``."""
    if case_output.image_file is not None:
        copy_image(case_output.image_file, target, case_output.case)
    else:
        write_array(case_output.image, case_output.geometry, target)


def copy_verified_gzip(source: Path, target: Path, case: str, chunk: int = 1 << 22) -> None:
    """Copy a gzip file byte for byte while checking its stream (header, CRC32 and length)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing: header, CRC32 and size checked
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            while True:
                block = src.read(chunk)
                if not block:
                    break
                dst.write(block)
                data = block
                while data:
                    inflater.decompress(data, 0)
                    data = inflater.unused_data
                    if data:  # a multi-member gzip file: the next member starts here
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise Unreadable(f"case {case}: cannot read {source}: corrupt gzip stream ({exc})") from exc
    if not inflater.eof:
        raise Unreadable(f"case {case}: cannot read {source}: truncated gzip stream (file ends early)")
