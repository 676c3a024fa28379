"""2-D angiography frames (``nnunet-tavr fluoro``) -> an nnU-Net 2d dataset of the aortic root.

The input is the output folder of ``nnunet-tavr fluoro``: one folder per rendered case (one CT,
i.e. one *patient*) with its frames, masks and ``frames.json``. The renderer and this scheme are
separate steps so that frames are rendered once (and can be looked at, or rendered with other
settings into another folder) and converted like any dataset: manifest, resume, shards, splits.

Every frame becomes one nnU-Net case ``<case>_fNNN``: the 8-bit frame copied byte for byte
(channel ``fluoroscopy``, 2-D NIfTI whose spacing is the pixel size at the isocentre in mm, which
nnU-Net keeps through preprocessing and writes back into its predictions, so ``compare`` measures
ASSD in mm) and its mask (``aortic_root`` = 1). The scheme is **grouped**: a case's frames share
its patient (``CaseOutput.group``), so the train / validation / test split and every
cross-validation fold keep all frames of one patient together (checked by
:func:`~nnunet_tavr.dataset_conversion.splits.check_groups` when the splits are written). The
manifest lists the patient and the C-arm pose of every frame. Cases the renderer excluded are listed
as dropped with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme
from nnunet_tavr.errors import GridMismatch, InputError, MissingFile

FRAMES_JSON = "frames.json"
FORMAT_PREFIX = "nnunet-tavr-fluoro/"


class FluoroScheme(Scheme):
    name = "fluoro"
    dataset_id = 316
    dataset_name = "FluoroRoot"
    channel_names = {0: "fluoroscopy"}
    description = ("Aortic root on angiography frames rendered from CT with TAVR labels (nnunet-tavr fluoro): cone-beam "
                   "C-arm views around the coplanar view, contrast bolus, pigtail catheter, noise; 2-D, spacing = pixel at the isocentre")
    reference = "seed 002: CNN aortic-root segmentation on intraoperative angiography during TAVI"
    license = "derived from the source CTs (see their licence)"
    manifest_columns = ("patient", "frame", "primary_deg", "secondary_deg", "view", "off_plane_deg", "pixel_mm")
    grouped = True

    def labels(self) -> dict[str, int]:
        return {"background": 0, "aortic_root": 1}

    def discover(self, root) -> tuple[str, list]:
        """Every sub-folder with a ``frames.json`` is a case (a folder without one was not
        finished by the renderer, and is listed as missing)."""
        from nnunet_tavr.dataset_conversion.layouts import CaseSource
        from nnunet_tavr.dataset_conversion.outputs import check_case_id
        from nnunet_tavr.errors import InvalidCaseId

        root = Path(root)
        if not root.is_dir():
            raise MissingFile(f"input folder not found: {root}")
        cases = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            problem = None
            try:
                check_case_id(folder.name)
            except InvalidCaseId as exc:
                problem = exc
            if problem is None and not (folder / FRAMES_JSON).is_file():
                if not (folder / "images").is_dir():
                    continue  # not a case folder of the renderer
                problem = MissingFile(f"case {folder.name}: {folder / FRAMES_JSON} missing: rendering did not finish "
                                      "(rerun nnunet-tavr fluoro)")
            cases.append(CaseSource(folder.name, folder if problem is None else root, problem))
        if not cases:
            raise InputError(f"no rendered cases (<case>/{FRAMES_JSON}) in {root}: is it the output folder of 'nnunet-tavr fluoro'?")
        return "fluoro", cases

    def convert_case(self, source) -> CaseResult:
        from nnunet_tavr.io import read_array, read_geometry

        path = source.path / FRAMES_JSON
        try:
            record = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"case {source.case_id}: {path} is not valid JSON: {exc}") from None
        if not str(record.get("format", "")).startswith(FORMAT_PREFIX):
            raise InputError(f"case {source.case_id}: {path} is not a frames record of nnunet-tavr fluoro")
        patient = str(record.get("patient") or source.case_id)
        details = {"patient": patient, "status": record.get("status"), "frames": len(record.get("frames", [])),
                   "reference_view": record.get("reference_view"), "anatomy": record.get("anatomy")}
        if record.get("status") != "rendered":
            return CaseResult(excluded=(record.get("reason") or "excluded", record.get("detail") or "not rendered"),
                              details=details, columns={"patient": patient})
        outputs = []
        for frame in record["frames"]:
            image = source.path / frame["image"]
            mask, geometry = read_array(source.path / frame["mask"], frame["id"])
            image_geometry = read_geometry(image, frame["id"])
            problem = image_geometry.mismatch(geometry)
            if problem:
                raise GridMismatch(f"case {frame['id']}: {frame['mask']} is not on the grid of {frame['image']}: {problem}")
            if len(geometry.shape) != 2:
                raise InputError(f"case {frame['id']}: {image} is not a 2-D frame (shape {geometry.shape})")
            labels = (mask > 0).astype(np.uint8)
            outputs.append(CaseOutput(
                case=frame["id"], labels=labels, geometry=geometry, image_file=image, group=patient,
                counts={"aortic_root": int(labels.sum())},
                columns={"patient": patient, "frame": frame["id"], "primary_deg": round(frame["primary_deg"], 2),
                         "secondary_deg": round(frame["secondary_deg"], 2), "view": frame["label"],
                         "off_plane_deg": round(frame["off_plane_deg"], 2), "pixel_mm": round(float(geometry.spacing[-1]), 4)},
            ))
        return CaseResult(outputs=outputs, details=details, columns={"patient": patient})

    def dataset_figures(self, folder, records) -> None:
        """``qc/frames.png``: the frames' angulations per patient, and one frame of up to eight patients."""
        from nnunet_tavr.io import pyplot, read_array, save_figure
        from nnunet_tavr.labels import colour

        outputs = [o for r in records for o in r.get("outputs", [])]
        if not outputs:
            return
        plt = pyplot()
        fig = plt.figure(figsize=(16, 6))
        ax = fig.add_subplot(1, 3, 1)
        patients = sorted({o["columns"]["patient"] for o in outputs})
        cmap = plt.get_cmap("tab20")
        for i, patient in enumerate(patients):
            pts = np.array([[o["columns"]["primary_deg"], o["columns"]["secondary_deg"]] for o in outputs if o["columns"]["patient"] == patient])
            ax.scatter(pts[:, 0], pts[:, 1], s=10, color=cmap(i % 20), label=patient if i < 12 else None)
        ax.set_xlabel("primary (degrees): RAO < 0 < LAO")
        ax.set_ylabel("secondary (degrees): CAU < 0 < CRA")
        ax.set_title(f"{len(outputs)} frames of {len(patients)} patients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        firsts = [next(o for o in outputs if o["columns"]["patient"] == p) for p in patients[:8]]
        for k, o in enumerate(firsts):
            side = "imagesTs" if (folder / "imagesTs" / f"{o['case']}_0000.nii.gz").is_file() else "imagesTr"
            label_side = "labelsTs" if side == "imagesTs" else "labelsTr"
            image, _ = read_array(folder / side / f"{o['case']}_0000.nii.gz")
            mask, _ = read_array(folder / label_side / f"{o['case']}.nii.gz")
            a = fig.add_subplot(2, 6, [3, 4, 5, 6, 9, 10, 11, 12][k])
            a.imshow(image, cmap="gray", vmin=0, vmax=255)
            if mask.any():
                a.contour(mask, [0.5], colors=[colour("aortic_root")], linewidths=0.8)
            a.set_title(f"{o['case']} ({o['columns']['view']})", fontsize=7)
            a.set_axis_off()
        fig.tight_layout()
        save_figure(fig, folder / "qc" / "frames.png")
