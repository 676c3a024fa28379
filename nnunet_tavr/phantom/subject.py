"""One subject in memory: :func:`make_subject` composes the builders and assembles the truth."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nnunet_tavr.phantom.aorta import AORTA_PARTS, paint_curved_aorta
from nnunet_tavr.phantom.background import paint_background, render_ct
from nnunet_tavr.phantom.calcium import calcium_generator, draw_contrast, paint_calcium
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.fov import cut_to_field_of_view, field_of_view
from nnunet_tavr.phantom.frame import anatomical_frame
from nnunet_tavr.phantom.iliacs import paint_iliacs
from nnunet_tavr.phantom.label_map import tavr_labels
from nnunet_tavr.phantom.parameters import draw_parameters
from nnunet_tavr.phantom.root import paint_root
from nnunet_tavr.phantom.structure import LEFT_VENTRICLE, MASK_NAMES, Structure
from nnunet_tavr.phantom.ventricle import paint_ventricle


@dataclass
class Phantom:
    """One synthetic subject. Arrays are (z, y, x); ``spacing`` is mm per array axis."""

    ct: np.ndarray
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    aorta_part: np.ndarray
    spacing: tuple[float, float, float]
    truth: dict = field(default_factory=dict)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: uint16 (z, y, x) id of the calcium nodule of every true calcium voxel (``calcium=True`` only)
    calcium: np.ndarray | None = None
    #: TotalSegmentator tasks whose multilabel file is written too (``<task>.nii.gz`` beside the CT)
    multilabel: tuple[str, ...] = ()

    @property
    def geometry(self):
        from nnunet_tavr.io import Geometry

        return Geometry(
            shape=tuple(self.ct.shape),
            spacing=tuple(float(s) for s in self.spacing),
            origin=tuple(float(o) for o in self.origin),
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        )


def make_subject(
    seed: int,
    shape: tuple[int, int, int] = (200, 160, 160),
    spacing: float | tuple[float, float, float] = 1.5,
    heart: bool = True,
    iliacs: bool = True,
    stenosis: bool = True,
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    noise_hu: float = 12.0,
    calcium: bool = False,
    calcium_nodules: int | None = None,
    cusps: bool = False,
    aortic_sinuses: bool = False,
    heart_chambers: bool = False,
    heartchambers_highres: bool = False,
) -> Phantom:
    """Build one subject in memory.

    Parameters
    ----------
    seed : int
        Everything random about the subject derives from it (deterministic).
    shape : (int, int, int)
        Array shape (z, y, x) in voxels. The anatomy is laid out relative to the field of view, so
        any shape of roughly 300 x 240 x 240 mm works.
    spacing : float or (float, float, float)
        Voxel size in mm, isotropic or per array axis (z, y, x).
    heart : bool
        ``False`` makes a chest-less scan: the field of view ends at the diaphragm, so the left
        ventricle and the thoracic aorta are absent (their masks are written empty).
    iliacs : bool
        ``False`` ends the field of view above the aortic bifurcation: iliac masks are empty.
    stenosis : bool
        Narrow one iliac artery (side, position and depth drawn from ``seed``).
    rotation_deg : (float, float, float)
        Extra rotation of the whole anatomy about the centre of the field of view (degrees about
        z, y, x), for tests of orientation-independent geometry.
    noise_hu : float
        Standard deviation of the Gaussian CT noise.
    calcium : bool
        Add calcified nodules and plaques and vary the contrast lumen (:mod:`.calcium`); off by
        default (the subject is then byte-identical to one made without the option).
    calcium_nodules : int, optional
        With ``calcium``: the number of deposits (0: a calcium-free subject with the calcium
        contrast); default drawn per region.
    cusps : bool
        Three sinus lobes (RCC, LCC, NCC) with hinge points and commissures in ``truth.json``
        (:mod:`nnunet_tavr.phantom.cusps`). Off: the subject is byte-identical to before.
    aortic_sinuses : bool
        Also write TotalSegmentator's ``aortic_sinuses`` masks (the three cusps and the LVOT);
        implies ``cusps``.
    heart_chambers : bool
        The whole heart (:mod:`nnunet_tavr.phantom.heart`): right ventricle, atria, left atrial
        appendage, pulmonary artery and veins, superior vena cava, papillary muscles, with their
        true volumes and the LV mass in ``truth.json``. Off: the subject is byte-identical to before.
    heartchambers_highres : bool
        Also write TotalSegmentator's ``heartchambers_highres`` multilabel file; implies
        ``heart_chambers``.

    Returns
    -------
    Phantom
        CT (int16 HU), TotalSegmentator-named masks (bool), the 7-class TAVR label map by
        construction, the aorta part map and ``truth`` (JSON-serialisable).
    """
    # One generator, shared in this order: parameters, background noise, spine, myocardium, blood.
    # Opt-in builders (cusps, calcium) draw from their own generators and are recorded only when on,
    # so that subjects made without them stay byte-identical.
    rng = np.random.default_rng(seed)
    prm = draw_parameters(rng)
    frame = anatomical_frame(prm, shape, spacing, rotation_deg)
    canvas = Canvas(frame.shape, frame.spacing)
    fov = field_of_view(frame, heart, iliacs)

    # Geometry: later builders leave the voxels of earlier ones alone (the aorta wins).
    curved = paint_curved_aorta(frame, prm, canvas)
    root = paint_root(frame, prm, canvas)
    aorta_part = compose_aorta_parts(curved, root)
    ventricle = paint_ventricle(frame, prm, canvas, aorta_part > 0)
    iliac = paint_iliacs(frame, prm, canvas, aorta_part > 0, stenosis)
    origin = tuple(float(-c) for c in (frame.extent[::-1] / 2))  # SimpleITK (x, y, z) origin
    structures, extra = (curved, root, ventricle, iliac), []
    cusps = bool(cusps or aortic_sinuses)
    if cusps:  # opt-in builder: the sinus lobes join the root (after the ventricle: they lie above the plane)
        from nnunet_tavr.phantom.cusps import paint_cusps

        cusp = paint_cusps(frame, prm, canvas, root, aorta_part, ventricle.masks[LEFT_VENTRICLE], seed, origin)
        aorta_part[cusp.aux["lobes"]] = AORTA_PARTS["root"]
        structures, extra = structures + (cusp,), [cusp]
    masks = union_of_masks(canvas, structures)
    heart_chambers = bool(heart_chambers or heartchambers_highres)
    if heart_chambers:  # opt-in builder with its own generator (the aorta and the LV keep their voxels)
        from nnunet_tavr.phantom.heart import add_heart, paint_heart, paint_heart_intensities

        heart_structure = paint_heart(frame, prm, canvas, seed, aorta_part > 0, ventricle, fov.aux["cut"])
        masks = add_heart(masks, heart_structure)
        extra.append(heart_structure)
    sinus_masks = cusp.aux["sinuses"] if cusps and aortic_sinuses else {}
    cut_to_field_of_view([*masks.values(), aorta_part, *sinus_masks.values()], fov.aux["cut"])

    background = paint_background(rng, frame, canvas, noise_hu)
    if calcium:  # its own generator: the shared one draws exactly what it draws without calcium
        calcium_rng = calcium_generator(seed)
        contrast = draw_contrast(calcium_rng)
        prm = replace(prm, contrast_hu=contrast.lumen_hu)
    if heart_chambers:
        paint_heart_intensities(background, masks, heart_structure, frame, prm, noise_hu)
    intensities = render_ct(rng, background.aux["ct"], masks, prm, fov.aux["cut"], noise_hu)
    labels = tavr_labels(canvas, masks, aorta_part, root, ventricle, heart)
    if calcium:
        annulus = root.aux["annulus"] if heart else None
        extra.append(paint_calcium(calcium_rng, canvas, masks, labels, annulus, intensities.aux["ct"], contrast,
                                   fov.aux["cut"], noise_hu, calcium_nodules))

    header = {
        "seed": int(seed),
        "shape": list(frame.shape),
        "spacing": frame.spacing.tolist(),
        "rotation_deg": list(map(float, rotation_deg)),
    }
    if cusps:  # recorded only when on, so that subjects without them keep their truth.json
        header.update(cusps=True, aortic_sinuses=bool(aortic_sinuses))
    if heart_chambers:
        header.update(heart_chambers=True, heartchambers_highres=bool(heartchambers_highres))
    # truth.json lists the builders' keys in this order (that of the files written so far).
    truth = merge_truth(header, [fov, root, ventricle, curved, iliac, intensities, *extra])
    return Phantom(ct=intensities.aux["ct"], masks={**masks, **sinus_masks}, labels=labels, aorta_part=aorta_part,
                   spacing=tuple(frame.spacing.tolist()), truth=truth, origin=origin,
                   calcium=extra[-1].aux["ids"] if calcium else None,
                   multilabel=("heartchambers_highres",) if heartchambers_highres else ())


def compose_aorta_parts(curved: Structure, root: Structure) -> np.ndarray:
    """The aorta part map: the root tube's parts (root, ascending) over the curved aorta's."""
    aorta_part = curved.aux["aorta_part"].copy()
    tube = root.aux["aorta_part"] > 0
    aorta_part[tube] = root.aux["aorta_part"][tube]
    return aorta_part


def union_of_masks(canvas: Canvas, structures) -> dict[str, np.ndarray]:
    """Every name of :data:`MASK_NAMES` -> the union of the builders' masks of that name (new
    arrays: the builders' own stay as painted).

    Raises
    ------
    ValueError
        A builder painted a mask that the subject does not write.
    """
    masks = {name: canvas.blank() for name in MASK_NAMES}
    for structure in structures:
        for name, mask in structure.masks.items():
            if name not in masks:
                raise ValueError(f"builder {structure.name!r} painted {name!r}, which is not in MASK_NAMES")
            masks[name] |= mask
    return masks


def merge_truth(header: dict, structures) -> dict:
    """``header`` followed by every builder's truth keys, in the order given.

    Raises
    ------
    ValueError
        Two builders (or a builder and the header) claim the same key.
    """
    truth = dict(header)
    for structure in structures:
        clash = sorted(truth.keys() & structure.truth.keys())
        if clash:
            raise ValueError(f"builder {structure.name!r} repeats truth keys {clash}")
        truth.update(structure.truth)
    return truth
