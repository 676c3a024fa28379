"""One case, from TotalSegmentator masks to the TAVR label map: the library path behind
``nnunet-tavr derive`` (one case or ``--batch``) and the TAVR scheme of ``nnunet-tavr convert``.

::

    subject = load_tavr_subject("s0001/")                 # masks by our names, the grid, the files
    derivation = derive_case(subject, DerivationParams())  # labels (or None) + DerivationResult
    write_qc(derivation, "s0001.png")                      # the QC figure, over the CT

The result object is used as it is in the same process (no JSON round trip); its voxel counts
are those counted while painting the label map.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nnunet_tavr.label_derivation import rules
from nnunet_tavr.label_derivation.labelmap import COARSE, INPUTS, DerivationResult, derive_tavr_labels, required_structures
from nnunet_tavr.labels import LABELS
from nnunet_tavr.subject import Subject, load_subject


@dataclass(frozen=True)
class DerivationParams:
    """The rule parameters (physical units; defaults = the paper's voxel counts on 1.5 mm).

    See :mod:`nnunet_tavr.label_derivation.rules` for what each one does.
    """

    valve_mm: float = rules.VALVE_MM
    annulus_mm: float = rules.ANNULUS_MM
    step_mm: float | None = None
    window: int = rules.WINDOW
    max_distance_mm: float = rules.MAX_DISTANCE_MM
    min_prominence: float = rules.MIN_PROMINENCE
    flat_tolerance: float = rules.FLAT_TOLERANCE

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "DerivationParams":
        """Parameters from a (possibly partial) dict; unknown keys are an error."""
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown derivation parameter(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


@dataclass
class CaseDerivation:
    """A derived (or excluded) case: its subject, the label map (``None`` when excluded), the record."""

    subject: Subject
    labels: np.ndarray | None
    result: DerivationResult

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def case(self) -> str:
        return self.subject.case

    def display_labels(self) -> np.ndarray:
        """What a figure shows: the label map, or for an excluded case its coarse masks."""
        if self.labels is not None:
            return self.labels
        shown = np.zeros(self.subject.geometry.shape, np.uint8)
        for name in COARSE[::-1]:
            if name in self.subject.masks:
                shown[self.subject.masks[name] & (shown == 0)] = LABELS[name]
        return shown


def load_tavr_subject(subject_dir=None, **kwargs) -> Subject:
    """:func:`nnunet_tavr.subject.load_subject` for the masks the TAVR derivation reads."""
    return load_subject(subject_dir, structures=INPUTS, **kwargs)


def derive_case(subject: Subject, params: DerivationParams | None = None, require_iliacs: bool = False,
                cite_files: bool = True) -> CaseDerivation:
    """Derive the TAVR label map of one loaded subject (nothing is written).

    Parameters
    ----------
    subject : Subject
        From :func:`load_tavr_subject`.
    params : DerivationParams, optional
        Rule parameters; default the paper's.
    require_iliacs : bool
        Exclude cases without both iliac arteries (the one place this requirement is checked).
    cite_files : bool
        Name each mask's file in exclusion messages. A dataset manifest lists the case folder in
        its own column and passes ``False``, so that its messages do not depend on where the
        data lie.
    """
    params = params or DerivationParams()
    labels, result = derive_tavr_labels(
        subject.masks, subject.spacing, case=subject.case, required=required_structures(require_iliacs),
        sources=subject.mask_paths if cite_files else None, looked_for=subject.looked_for, **params.as_dict(),
    )
    result.warnings = list(subject.warnings) + result.warnings
    return CaseDerivation(subject, labels, result)


def write_qc(derivation: CaseDerivation, path: str | os.PathLike, with_ct: bool = True) -> Path:
    """The case's QC figure (labels over the CT in the annulus plane and along the root, and the
    area curve; an excluded case shows its coarse masks and the reason)."""
    from nnunet_tavr.label_derivation.qc import plot_case

    ct = derivation.subject.read_ct() if with_ct else None
    plot_case(path, derivation.subject.spacing, derivation.display_labels(), derivation.result, ct=ct)
    return Path(path)


def report_record(derivation: CaseDerivation, output: str | os.PathLike | None) -> dict:
    """The JSON report of ``nnunet-tavr derive --report``: the result plus the files involved."""
    subject = derivation.subject
    record = derivation.result.to_dict()
    record["inputs"] = {name: str(p) for name, p in subject.mask_paths.items()}
    record["ct"] = None if subject.ct_path is None else str(subject.ct_path)
    record["output"] = None if derivation.labels is None or output is None else str(output)
    return record
