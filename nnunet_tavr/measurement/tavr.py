"""``measure_tavr``: every TAVR planning measurement of one 7-class segmentation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_tavr.io import as_label_map
from nnunet_tavr.labels import CALCIUM_LABEL, FOREGROUND, LABELS
from nnunet_tavr.measurement.access import measure_iliac
from nnunet_tavr.measurement.annulus import measure_annulus
from nnunet_tavr.measurement.record import MeasurementRecord, Section
from nnunet_tavr.measurement.root import measure_root


def label_volumes(labels: np.ndarray, spacing, boxes=None) -> Section:
    """Volume of every foreground label in ml (voxel count x voxel volume); absent labels are missing.

    Voxels are counted inside each label's bounding box (``boxes`` from
    ``scipy.ndimage.find_objects``): several times faster than a full-volume ``bincount``.
    """
    boxes = ndimage.find_objects(labels) if boxes is None else boxes
    voxel_ml = float(np.prod(np.asarray(spacing, float))) / 1000.0
    section = Section("volumes")
    for name in FOREGROUND:
        value = LABELS[name]
        box = boxes[value - 1] if len(boxes) >= value else None
        n = 0 if box is None else int(np.count_nonzero(labels[box] == value))
        if n:
            section.add(name, n * voxel_ml, "ml", f"{n} voxels of label {value} x {voxel_ml * 1000:.4g} mm3")
        else:
            section.add_missing(name, f"label {value} absent (0 voxels)")
    extra = [v + 1 for v in range(max(LABELS.values()), len(boxes)) if boxes[v] is not None]
    if extra:
        section.notes.append(f"label values outside the TAVR map present: {extra[:10]}")
    return section


def measure_tavr(labels: np.ndarray, spacing, case: str = "case", ascending_height_mm: float = 40.0, ct: np.ndarray | None = None,
                 calcium: str = "auto", calcium_params=None, cusps=None, hinge_points: dict | None = None,
                 hinge_source: str = "") -> MeasurementRecord:
    """Measure annulus, aortic root, ascending aorta, iliac access and label volumes.

    Parameters
    ----------
    labels : (z, y, x) integer array
        A 7-class TAVR label map (:mod:`nnunet_tavr.labels`): derived labels or an
        ``nnUNetv2_predict`` output.  Not modified.
    spacing : 3 floats
        Voxel size per array axis in mm (``image.GetSpacing()[::-1]``).
    case : str
        Case identifier stored in the record.
    ascending_height_mm : float
        Arc length above the annulus at which the ascending aorta diameter is measured.
    ct : (z, y, x) array in HU, optional
        The case's CT: calcium by rule when the segmentation has no calcium label, and the
        density-weighted calcium scores.
    calcium : "auto", "labels", "rule" or "off"
        Where the ``calcium`` section's calcium comes from (:mod:`.calcium`); "auto": the calcium
        label (8) if present, else the rule on ``ct``, else no section.
    calcium_params, cusps, hinge_points
        See :func:`nnunet_tavr.measurement.calcium.measure_calcium`.
    hinge_points : dict, optional
        ``RCC``, ``LCC``, ``NCC`` -> mm point (arrays' frame): the annulus is then measured in the
        plane through them (:mod:`nnunet_tavr.measurement.hinge`), a ``hinge_points`` section is
        added (``hinge_source`` says where they came from) and calcium is reported per cusp.

    Returns
    -------
    MeasurementRecord
        Sections ``annulus``, ``aortic_root``, ``ascending_aorta``, ``iliac_artery_left``,
        ``iliac_artery_right`` and ``volumes``; values in mm, mm² and ml with their method;
        structures that are absent or unusable are missing with the reason.
    """
    labels = np.asarray(labels)
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (3,)))
    if labels.ndim != 3:
        raise ValueError(f"case {case}: expected a 3d label map, got shape {labels.shape}")
    labels = as_label_map(labels, f"case {case}: the label map", ValueError)
    record = MeasurementRecord(case=case, shape=tuple(labels.shape), spacing=spacing, settings={"ascending_height_mm": ascending_height_mm})
    segmentation = labels
    labels = _anatomy(labels)  # calcium voxels (label 8) count as the structure they lie on
    boxes = ndimage.find_objects(labels)

    given = None
    if hinge_points is not None:
        from nnunet_tavr.measurement.hinge import hinge_plane

        given = hinge_plane(hinge_points)
    annulus, plane = measure_annulus(labels, spacing, boxes, plane=given, ct=ct)
    record.add(annulus)
    if hinge_points is not None:
        from nnunet_tavr.measurement.hinge import hinge_section

        record.add(hinge_section(hinge_points, annulus, hinge_source))
    if plane is None:
        reason = f"needs the annulus plane; annulus missing: {annulus.missing}"
        record.add(Section.absent("aortic_root", reason))
        record.add(Section.absent("ascending_aorta", reason))
    else:
        root, ascending = measure_root(labels, spacing, plane, ascending_height_mm)
        record.add(root)
        record.add(ascending)
    for name in ("iliac_artery_left", "iliac_artery_right"):
        record.add(measure_iliac(labels, spacing, name, boxes))
    record.add(label_volumes(labels, spacing, boxes))
    _add_calcium(record, segmentation, labels, spacing, ct, plane, calcium, calcium_params, cusps, hinge_points, case)
    return record


def _anatomy(labels: np.ndarray) -> np.ndarray:
    from nnunet_tavr.label_derivation.calcium import anatomy_view

    return anatomy_view(labels) if labels.max(initial=0) >= CALCIUM_LABEL else labels


def _add_calcium(record, segmentation, anatomy, spacing, ct, plane, source, params, cusps, hinge_points, case) -> None:
    """The ``calcium`` section, when the segmentation has calcium or a CT is given (or it is asked)."""
    from nnunet_tavr.measurement.calcium import calcium_source, measure_calcium

    how, why = calcium_source(segmentation, ct, source)
    if how is None and source in ("auto", "off"):
        return
    section, _ = measure_calcium(segmentation, anatomy, spacing, ct, plane, source, params, cusps, hinge_points, case)
    record.add(section)
