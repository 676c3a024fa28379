"""Rendering the frames of one case into an output folder; reruns resume.

Layout of ``OUT`` (what the ``fluoro`` dataset scheme reads)::

    OUT/<case>/images/<case>_f000.nii.gz    8-bit frame, 2-D NIfTI, spacing = pixel size at the isocentre (mm)
    OUT/<case>/masks/<case>_f000.nii.gz     its aortic-root mask (0/1), same grid
    OUT/<case>/preview.png                  frames with mask outlines, the S-curve with their angulations
    OUT/<case>/frames.json                  the case's record, written last (marks the case done)
    OUT/fluoro.csv                          one row per case: status, reason, frames, patient

``frames.json`` holds the patient, the settings fingerprint, the annulus plane, the S-curve and the
reference view, and per frame its C-arm pose (angulation, distances, pixel size, the 3x4
projection matrix LPS mm -> pixels), every drawn parameter and where its mask lies. A case whose
rules do not apply (no annulus, derivation excluded) gets a record with ``status: excluded`` and
the reason, so that reruns skip it and the dataset scheme lists it.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nnunet_tavr import __version__

FORMAT = "nnunet-tavr-fluoro/1"
FRAMES_JSON = "frames.json"
#: What the mask is, in every record.
MASK_DEFINITION = ("projection of the aortic root (labels aortic_root + valve: annulus plane to sinotubular junction) "
                   "and the first {ascending_mm:g} mm of the ascending aorta along the vessel (aorta voxels within that "
                   "geodesic distance of the root); a pixel is inside when its ray meets the object")


def frame_id(case: str, index: int) -> str:
    return f"{case}_f{index:03d}"


def case_rng(seed: int, case: str) -> np.random.Generator:
    """A case's own generator: its frames do not depend on the other cases or their order."""
    return np.random.default_rng([int(seed), zlib.crc32(case.encode())])


def fingerprint(case, settings, anatomy_settings, seed: int, frames: int, derivation, hinge_source) -> dict:
    """What decides a case's frames: settings, seed, number of frames and the input files."""
    def stat(path):
        st = Path(path).stat()
        return [int(st.st_size), int(st.st_mtime_ns)]

    inputs = {str(p): stat(p) for p in case.inputs() if Path(p).is_file()}
    hinge = None
    if hinge_source is not None and Path(hinge_source).exists():
        hinge_file = Path(hinge_source) / f"{case.case}.json" if Path(hinge_source).is_dir() else Path(hinge_source)
        hinge = stat(hinge_file) if hinge_file.is_file() else None
    return {"format": FORMAT, "render": settings.as_dict(), "anatomy": asdict(anatomy_settings), "seed": int(seed),
            "frames": int(frames), "derivation": None if derivation is None else derivation.as_dict(), "inputs": inputs,
            "hinge_points": hinge}


def read_record(case_dir: Path) -> dict | None:
    try:
        return json.loads((case_dir / FRAMES_JSON).read_text())
    except (OSError, ValueError):
        return None


def is_done(case_dir: Path, print_: dict) -> dict | None:
    """The record of a case rendered with the same fingerprint whose files are all there."""
    record = read_record(case_dir)
    if record is None or record.get("fingerprint") != print_:
        return None
    for frame in record.get("frames", []):
        if not (case_dir / frame["image"]).is_file() or not (case_dir / frame["mask"]).is_file():
            return None
    return record


def frame_geometry(shape, pixel_mm: float):
    """The 2-D grid of a frame: pixel size at the isocentre, origin 0, identity direction."""
    from nnunet_tavr.io import Geometry

    return Geometry(shape=tuple(int(s) for s in shape), spacing=(float(pixel_mm), float(pixel_mm)), origin=(0.0, 0.0),
                    direction=(1.0, 0.0, 0.0, 1.0))


def render_case(case, out_dir: Path, settings, anatomy_settings, seed: int, frames: int, derivation=None, hinge_source=None,
                threads: int | None = None, preview: bool = True, force: bool = False) -> dict:
    """Render ``frames`` frames of one case into ``out_dir/<case>/``; returns its record.

    Bad input raises :class:`~nnunet_tavr.errors.InputError`; a case the rules do not apply to is
    recorded as excluded (and returned).
    """
    from nnunet_tavr.carm import cusp_views, nearest_to_ap, s_curve
    from nnunet_tavr import hinge_points
    from nnunet_tavr.errors import Excluded
    from nnunet_tavr.fluoro.anatomy import prepare_case
    from nnunet_tavr.fluoro.cases import load
    from nnunet_tavr.fluoro.render import reference_view, render_frame, sample_frame
    from nnunet_tavr.io import write_array, write_json
    from nnunet_tavr.safepaths import contained

    t0 = time.perf_counter()
    case_dir = contained(out_dir, case.case)
    print_ = fingerprint(case, settings, anatomy_settings, seed, frames, derivation, hinge_source)
    if not force:
        done = is_done(case_dir, print_)
        if done is not None:
            return {**done, "resumed": True}
    (case_dir / FRAMES_JSON).unlink(missing_ok=True)  # not done until rewritten
    base = {"format": FORMAT, "software": f"nnunet-tavr {__version__}", "case": case.case, "patient": case.patient,
            "fingerprint": print_, "ct": None if case.ct_path is None else str(case.ct_path),
            "labels": "derived from the case's masks" if case.labels_path is None else str(case.labels_path)}
    try:
        ct, labelmap, geometry, values = load(case, derivation)
        hinges = hinge_points.read(hinge_source, case.case, geometry)
        anatomy = prepare_case(case.case, ct, labelmap, geometry, anatomy_settings, values,
                               None if hinges is None else {k: v.tolist() for k, v in hinges.items()})
    except Excluded as exc:
        record = {**base, "status": "excluded", "reason": exc.code, "detail": exc.message, "frames": [],
                  "seconds": round(time.perf_counter() - t0, 2)}
        write_json(record, case_dir / FRAMES_JSON)
        return record
    del ct, labelmap

    rng = case_rng(seed, case.case)
    reference, why = reference_view(anatomy)
    views = {"reference": reference, "nearest_ap": nearest_to_ap(anatomy.normal_world)}
    cusp = None
    if anatomy.hinge_points_world:
        cusp = cusp_views(*(anatomy.hinge_points_world[k] for k in hinge_points.NAMES))
        views.update(three_cusp=cusp.three_cusp, cusp_overlap=cusp.cusp_overlap)
    geometry2d = frame_geometry(settings.shape, settings.pixel_mm)
    entries, images, masks, angles = [], [], [], []
    for k in range(frames):
        params = sample_frame(rng, anatomy, settings)
        frame = render_frame(anatomy, params, settings, rng, threads)
        fid = frame_id(case.case, k)
        image_rel, mask_rel = f"images/{fid}.nii.gz", f"masks/{fid}.nii.gz"
        write_array(frame.image, geometry2d, case_dir / image_rel)
        write_array(frame.mask.astype(np.uint8), geometry2d, case_dir / mask_rel)
        entries.append({"id": fid, "image": image_rel, "mask": mask_rel, **frame.record(anatomy)})
        if preview and k < 6:
            images.append(frame.image)
            masks.append(frame.mask)
        angles.append(params.angle)
    curve = np.linspace(-90, 90, 37)
    record = {
        **base, "status": "rendered", "reason": "", "detail": "",
        "mask_definition": MASK_DEFINITION.format(ascending_mm=anatomy_settings.ascending_mm),
        "anatomy": anatomy.record(),
        "reference_view": {**reference.as_dict(), "why": why},
        "cusp_views": None if cusp is None else cusp.as_dict(),
        "s_curve": [[float(a), float(b)] for a, b in zip(curve, s_curve(anatomy.normal_world, curve))],
        "pixel_mm": settings.pixel_mm, "shape": list(settings.shape),
        "frames": entries,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if preview:
        from nnunet_tavr.fluoro.figures import case_preview

        case_preview(case_dir / "preview.png", case.case, images, masks, angles, anatomy.normal_world,
                     {k: v for k, v in views.items() if k != "nearest_ap" or cusp is None}, settings.pixel_mm)
    write_json(record, case_dir / FRAMES_JSON)  # last: marks the case done
    return record
