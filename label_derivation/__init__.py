"""Rule-based TAVR pseudo-labels (installed as ``nnunet_tavr.label_derivation``).

Paper section 2.1: the valve, annulus and aortic root are derived from TotalSegmentator's coarse
aorta and left-ventricle masks; with the iliac arteries they form the exclusive 7-class label map
of :mod:`nnunet_tavr.labels`.

- :mod:`.rules`: ``derive_valve``, ``derive_annulus``, ``derive_aortic_root`` (pure numpy).
- :mod:`.labelmap`: ``derive_tavr_labels`` (label map + :class:`DerivationResult`), the inputs it reads.
- :mod:`.case`: one case from its masks to its label map and QC figure (``derive`` and ``convert``).
- :mod:`.calcium`: calcium pseudo-labels from the CT (``derive_calcium``), with its regions
  (:mod:`.calcium_regions`), lumen statistics and thresholds (:mod:`.calcium_lumen`), parameters
  and results (:mod:`.calcium_record`).
- :mod:`.qc`: per-case and dataset-level QC figures.
- :mod:`.cli`: ``nnunet-tavr derive``.
"""

from nnunet_tavr.label_derivation.labelmap import DerivationResult, derive_tavr_labels
from nnunet_tavr.label_derivation.rules import (
    RootDetails,
    RuleNotApplicable,
    derive_annulus,
    derive_aortic_root,
    derive_valve,
    find_root_end,
    fit_annulus_plane,
)

__all__ = [
    "DerivationResult",
    "RootDetails",
    "RuleNotApplicable",
    "derive_annulus",
    "derive_aortic_root",
    "derive_tavr_labels",
    "derive_valve",
    "find_root_end",
    "fit_annulus_plane",
]
