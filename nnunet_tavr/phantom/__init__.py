"""Write synthetic TotalSegmentator-like subjects whose TAVR anatomy is known by construction.

Each subject is a CT with an oblique ellipsoidal left ventricle cut flat by the annulus plane, an
aortic root with an elliptic annulus, sinuses of Valsalva and a sinotubular junction (STJ), the
ascending aorta, the arch, a descending aorta running back down behind the heart, the abdominal
aorta and its bifurcation into two iliac arteries (one of them with a stenosis). The output uses the
TotalSegmentator dataset layout::

    OUT_DIR/meta.csv
    OUT_DIR/s0000/ct.nii.gz
    OUT_DIR/s0000/segmentations/{aorta,heart_ventricle_left,heart_myocardium,
                                 iliac_artery_left,iliac_artery_right}.nii.gz
    OUT_DIR/s0000/truth.json          (ground truth by construction, mm)
    OUT_DIR/s0000/calcium_truth.nii.gz  (--calcium only: true calcium voxels, value = nodule id)

With ``--calcium`` (``make_subject(calcium=True)``) subjects also have calcified nodules and
plaques on the valve, annulus, LVOT, aortic root, aorta and iliac arteries, listed in
``truth.json["calcium"]``, and a contrast lumen of 200-550 HU that varies between subjects.

With ``--heart-chambers`` (``make_subject(heart_chambers=True)``) the heart is whole: right
ventricle, both atria, left atrial appendage, pulmonary artery and veins, superior vena cava and
papillary muscles, with TotalSegmentator's mask names (``heart_atrium_left``, ``heart_ventricle_right``,
``pulmonary_artery``, ``pulmonary_vein``, ``superior_vena_cava``, ``atrial_appendage_left``, ...),
their true volumes and the LV mass in ``truth.json``; ``--heartchambers-highres`` also writes
``s0000/heartchambers_highres.nii.gz`` (TotalSegmentator's multilabel file). See docs/cardiac.md.

Arrays are (z, y, x) with z pointing superior, y posterior and x to the patient's left; all truth
coordinates are in the arrays' physical frame (index * spacing, mm, (z, y, x) order).

With ``--cusps`` the root has three sinus lobes (RCC, LCC, NCC) and ``truth.json`` their hinge points
and commissures (``index_zyx``, ``world_xyz_mm`` in SimpleITK's physical frame, and ``mm``); with
``--aortic-sinuses`` each subject also has TotalSegmentator's ``aortic_sinuses`` masks
(``right_coronary_cusp``, ``left_coronary_cusp``, ``non_coronary_cusp``,
``left_ventricular_outflow_tract``) in ``segmentations/``.

Package structure
-----------------
Each structure is a builder: a function that paints its masks on the subject's grid and returns a
:class:`~nnunet_tavr.phantom.structure.Structure` (its masks by TotalSegmentator name, the keys it
contributes to ``truth.json``, and auxiliary arrays for the builders and rules after it).

- ``parameters``: the per-subject random draw (sizes in mm, angles in degrees, contrast in HU).
- ``frame``: the grid, the field-of-view centre and rotation (``place``/``turn``) and the
  landmarks (annulus centre and normal, LV axis and centre, arch, bifurcation, diaphragm).
- ``canvas``: rasterising mm shapes onto the (z, y, x) grid; ease, radius profile, Bezier curve.
- ``structure``: the ``Structure`` record and the mask names (checked against
  :mod:`nnunet_tavr.totalseg`).
- builders: ``aorta`` (arch, descending and abdominal aorta), ``root`` (root and ascending tube:
  elliptic annulus, sinus, STJ), ``cusps`` (opt-in: sinus lobes, hinge points, commissures, the
  ``aortic_sinuses`` masks; generator id 3), ``ventricle`` (LV and myocardium), ``iliacs``, ``fov`` (chest-less
  or pelvis-less field of view), ``background`` (air, body, lungs, spine, noise and the CT
  intensities of every structure), ``calcium`` (opt-in: nodules, plaques and the contrast they
  are judged against; own generator, builder id 18).
- ``heart`` (opt-in, ``heart_anatomy`` for the layout): the other chambers and great vessels;
  ``shapes``: solids given in mm, painted at voxel centres and integrated below the voxel (the
  true volumes).
- ``label_map``: the 7-class TAVR label map by construction (valve and annulus rules, exactly).
- ``subject``: :func:`make_subject` composes the builders into a :class:`Phantom`.
- ``writer``: :func:`write_subject` and :func:`write_dataset` (resumable, ``meta.csv``).
- ``cli``: the ``nnunet-tavr phantom`` subcommand.

Adding a structure (cusps, heart chambers, calcium, ...)
---------------------------------------------------------
Every existing subject must stay byte-identical for the same seed and options
(``tests/test_identity.py`` keeps their hashes). Hence a new builder

- draws from **its own generator**, ``np.random.default_rng([seed, BUILDER_ID])`` with a
  builder id not used before, never from the subject's shared generator, whose stream is fixed
  (parameters, background noise, spine, myocardium, blood, in that order);
- is **opt-in**: a new option of :func:`make_subject` that defaults to off, so that calls without it
  paint, draw and write exactly what they did before (new masks and truth keys included);
- takes the voxels it may claim from the masks painted before it and documents which wins;
- returns its truth keys in its own ``Structure``; :func:`~nnunet_tavr.phantom.subject.merge_truth`
  refuses keys another builder already gave.
"""

from nnunet_tavr.phantom.aorta import AORTA_PARTS
from nnunet_tavr.phantom.fov import OUTSIDE_FOV_HU
from nnunet_tavr.phantom.label_map import ANNULUS_MM, VALVE_MM
from nnunet_tavr.phantom.structure import MASK_NAMES, Structure
from nnunet_tavr.phantom.subject import Phantom, make_subject
from nnunet_tavr.phantom.writer import subject_id, write_dataset, write_subject

__all__ = [
    "AORTA_PARTS",
    "ANNULUS_MM",
    "MASK_NAMES",
    "OUTSIDE_FOV_HU",
    "VALVE_MM",
    "Phantom",
    "Structure",
    "make_subject",
    "subject_id",
    "write_dataset",
    "write_subject",
]
