"""The measurement record: every value with its unit and method, every gap with its reason.

A :class:`MeasurementRecord` holds one :class:`Section` per structure (``annulus``,
``aortic_root``, ``ascending_aorta``, ``iliac_artery_left``, ``iliac_artery_right``, ``volumes``).
A section maps names to :class:`Quantity` (value, unit, method) or :class:`Missing` (reason); a
section whose structure is absent or unusable is itself missing, with the reason.  Nothing is ever
reported as 0 or NaN in place of a measurement.

``Section.geometry`` keeps the points, directions and profiles behind the numbers (mm, (z, y, x) in
the arrays' physical frame ``index * spacing``) so that the figure, and a reader of the JSON, can
see where each value was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnunet_tavr import __version__

#: JSON format tag, bumped when the layout of ``measurements.json`` changes.
FORMAT = "nnunet-tavr-measurements/1"


@dataclass(frozen=True)
class Quantity:
    """A measured value (a float, or a list of floats for points / vectors)."""

    value: Any
    unit: str
    method: str

    def to_json(self) -> dict:
        return {"value": _plain(self.value), "unit": self.unit, "method": self.method}


@dataclass(frozen=True)
class Missing:
    """A value that could not be measured, and why."""

    reason: str

    def to_json(self) -> dict:
        return {"missing": self.reason}


@dataclass
class Section:
    """Measurements of one structure."""

    name: str
    values: dict[str, Quantity | Missing] = field(default_factory=dict)
    missing: str | None = None
    geometry: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def absent(cls, name: str, reason: str) -> "Section":
        return cls(name=name, missing=reason)

    @property
    def ok(self) -> bool:
        return self.missing is None

    def add(self, key: str, value, unit: str, method: str) -> None:
        self.values[key] = Quantity(_plain(value), unit, method)

    def add_missing(self, key: str, reason: str) -> None:
        self.values[key] = Missing(reason)

    def get(self, key: str):
        """The value of ``key``, or ``None`` when the section or the value is missing."""
        entry = self.values.get(key)
        return entry.value if isinstance(entry, Quantity) else None

    def __getitem__(self, key: str):
        if self.missing is not None:
            raise KeyError(f"{self.name} is missing: {self.missing}")
        entry = self.values[key]
        if isinstance(entry, Missing):
            raise KeyError(f"{self.name}.{key} is missing: {entry.reason}")
        return entry.value

    def to_json(self) -> dict:
        if self.missing is not None:
            return {"missing": self.missing}
        out: dict[str, Any] = {key: entry.to_json() for key, entry in self.values.items()}
        if self.notes:
            out["notes"] = list(self.notes)
        if self.geometry:
            out["geometry"] = {key: _plain(value) for key, value in self.geometry.items()}
        return out


@dataclass
class MeasurementRecord:
    """All measurements of one case."""

    case: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    sections: dict[str, Section] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Section:
        return self.sections[name]

    def add(self, section: Section) -> Section:
        self.sections[section.name] = section
        return section

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "software": f"nnunet-tavr {__version__}",
            "case": self.case,
            "frame": "(z, y, x) mm = array index * spacing (SimpleITK array order)",
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing),
            "settings": _plain(self.settings),
            **{name: section.to_json() for name, section in self.sections.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "MeasurementRecord":
        """The record a ``measurements.json`` (its parsed dict) was written from: every reader of the
        file goes through here rather than walking its layout again."""
        reserved = {"format", "software", "case", "frame", "shape", "spacing_mm", "settings"}
        record = cls(case=data.get("case", ""), shape=tuple(data.get("shape", ())), spacing=tuple(data.get("spacing_mm", ())),
                     settings=dict(data.get("settings", {})))
        for name, body in data.items():
            if name in reserved or not isinstance(body, dict):
                continue
            if set(body) == {"missing"}:
                record.add(Section.absent(name, body["missing"]))
                continue
            section = record.add(Section(name, notes=list(body.get("notes", [])), geometry=dict(body.get("geometry", {}))))
            for key, entry in body.items():
                if key in ("notes", "geometry") or not isinstance(entry, dict):
                    continue
                if "value" in entry:
                    section.values[key] = Quantity(entry["value"], entry.get("unit", ""), entry.get("method", ""))
                elif "missing" in entry:
                    section.values[key] = Missing(entry["missing"])
        return record

    def summary_row(self) -> dict[str, Any]:
        """Flat ``{section.key: value}`` of every present quantity that is a number (for a CSV)."""
        row: dict[str, Any] = {"case": self.case}
        for name, section in self.sections.items():
            if not section.ok:
                continue
            for key, entry in section.values.items():
                if isinstance(entry, Quantity) and isinstance(entry.value, (int, float)):
                    row[f"{name}.{key}"] = entry.value
        return row


def _plain(value):
    """numpy -> plain Python; floats rounded to 4 decimals (0.1 micrometre), non-finite -> None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        # Profiles may hold planes without a usable section: JSON null, never NaN.
        return round(float(value), 4) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
