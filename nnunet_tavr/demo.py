"""Run the whole pipeline on built-in phantom data, end to end, and write a report.

  phantoms -> convert (TAVR labels, manifest, splits, QC) -> nnUNetv2_plan_and_preprocess
  -> nnUNetv2_train (nnUNetTrainerFocalSR, nnUNetTrainerDiceCE; fold 0) -> nnUNetv2_predict (test cases)
  -> compare -> measure -> DIR/report.md

It calls nnU-Net's real commands with their own environment variables pointed at folders inside
DIR, so nothing of yours under $nnUNet_raw / $nnUNet_preprocessed / $nnUNet_results is touched.
A second run reuses every finished stage. On a CPU it uses 20 phantoms at 4 mm and a small nnU-Net
plan (nnUNetDemoPlans: 32^3 patches, 4 stages, 16-128 features); on a GPU, 1.5 mm phantoms and
nnU-Net's own plan. Training uses the thin ``<Trainer>_demo`` subclasses (2,500 iterations, light
augmentation; docs/demo.md); --quick trains ``nnUNetTrainerFocalSR_quick`` only (1,200
iterations). The report leads with the test-set Dice of each trainer, the measurements of a
predicted case against the phantom's truth and the total time.

Examples:
  nnunet-tavr demo -o demo_output            # ~12 min on a 2-core CPU
  nnunet-tavr demo -o demo_output --quick    # ~3.5 min smoke run (what CI runs)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tavr.demo_report import read_manifest, write_report

DATASET_ID = 301
DATASET_NAME = f"Dataset{DATASET_ID:03d}_TAVR"
CONFIGURATION = "3d_fullres"
PARENT_TRAINERS = ("nnUNetTrainerFocalSR", "nnUNetTrainerDiceCE")
#: The CPU demo's plan (docs/demo.md): nnU-Net's preprocessing, a 32^3 patch (128 mm at 4 mm) and a
#: 4-stage U-Net. The fourth stage widens the receptive field to most of the patch, which the test
#: suite's 3-stage tiny plan lacks (it mixes up the left and right iliac arteries and the ventricle
#: and the aorta far from each other); doubling the features costs little on a CPU.
DEMO_PLANS = "nnUNetDemoPlans"
DEMO_FEATURES = (16, 32, 64, 128)


class DemoError(RuntimeError):
    """A stage failed; the message names the stage and its log file."""


@dataclass
class Settings:
    """Everything that decides what the demo does (recorded in the report)."""

    out: Path
    device: str
    quick: bool
    cases: int
    seed: int = 0

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def shape(self) -> tuple[int, int, int]:
        # the same 300 x 240 x 240 mm field of view at 1.5 mm (GPU) or 4 mm (CPU, docs/demo.md)
        return (200, 160, 160) if self.gpu else (75, 60, 60)

    @property
    def spacing(self) -> float:
        return 1.5 if self.gpu else 4.0

    @property
    def rule_mm(self) -> tuple[float, float]:
        """(valve_mm, annulus_mm): the paper's 3 voxels and 1 voxel on the phantom grid."""
        return 3 * self.spacing, 1 * self.spacing

    @property
    def plans(self) -> str:
        return "nnUNetPlans" if self.gpu else DEMO_PLANS

    @property
    def trainers(self) -> tuple[str, ...]:
        if self.quick:  # CI's smoke run: the paper's trainer only
            return (PARENT_TRAINERS[0] + "_quick",)
        return tuple(t + "_demo" for t in PARENT_TRAINERS)

    @property
    def no_heart(self) -> list[int]:
        """One chest-less subject, so the report shows a case the inclusion rules drop."""
        return [self.cases - 1]

    @property
    def totalseg(self) -> Path:
        return self.out / "totalsegmentator"

    @property
    def folders(self):
        from nnunet_tavr.folders import NnunetFolders

        return NnunetFolders.under(self.out)

    @property
    def raw(self) -> Path:
        return self.folders.raw

    @property
    def preprocessed(self) -> Path:
        return self.folders.preprocessed

    @property
    def results(self) -> Path:
        return self.folders.results

    @property
    def dataset_raw(self) -> Path:
        return self.raw / DATASET_NAME

    def predictions(self, trainer: str) -> Path:
        return self.out / "predictions" / trainer

    def trained_folder(self, trainer: str) -> Path:
        return self.results / DATASET_NAME / f"{trainer}__{self.plans}__{CONFIGURATION}" / "fold_0"


@dataclass
class StageResult:
    name: str
    status: str  # "ran" or "reused"
    seconds: float
    detail: str = ""
    outputs: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(self, settings: Settings):
        self.s = settings
        self.logs = settings.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.results: list[StageResult] = []
        self.env = settings.folders.env()
        self.env["PYTHONUNBUFFERED"] = "1"
        if not settings.gpu:
            # On a CPU, more augmentation or export workers than cores only fight the trainer for
            # them (and each export worker imports torch: ~1 GB).
            workers = str(min(2, os.cpu_count() or 1))
            self.env.setdefault("nnUNet_n_proc_DA", workers)
            self.env.setdefault("nnUNet_def_n_proc", workers)

    # ---------------------------------------------------------------------------------------
    def run_cmd(self, stage: str, cmd: list[str], progress: tuple[str, int] | None = None) -> None:
        """Run a console script, streaming its output to ``logs/<stage>.log``.

        ``progress`` = (regex with one integer group, total) drives a progress bar from the output
        (e.g. nnU-Net's "Epoch N" lines).
        """
        from tqdm import tqdm

        exe = shutil.which(cmd[0], path=str(Path(sys.executable).parent)) or shutil.which(cmd[0])
        if exe is None:
            raise DemoError(f"{stage}: command {cmd[0]} not found")
        log_path = self.logs / f"{stage}.log"
        bar = tqdm(total=progress[1], desc=f"  {stage}", unit="epoch", leave=False) if progress else None
        with open(log_path, "a", buffering=1) as log:  # line-buffered: follow it with tail -f
            log.write(f"\n$ {' '.join(cmd)}\n")
            proc = subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)
            tail: list[str] = []
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-25:]
                if bar is not None:
                    m = re.search(progress[0], line)
                    if m:
                        bar.n = int(m.group(1)) + 1
                        bar.refresh()
            code = proc.wait()
        if bar is not None:
            bar.close()
        if code != 0:
            raise DemoError(f"stage '{stage}' failed (exit {code}); full log: {log_path}\n" + "".join(tail))

    def stage(self, name: str, done: bool, action, detail=lambda: "", outputs=lambda: []) -> None:
        index, total = len(self.results) + 1, 5 + 2 * len(self.s.trainers)
        print(f"[{index}/{total}] {name} ...", flush=True)
        t0 = time.perf_counter()
        if not done:
            action()
        seconds = time.perf_counter() - t0
        result = StageResult(name, "reused" if done else "ran", seconds, detail(), [str(o) for o in outputs()])
        self.results.append(result)
        print(f"[{index}/{total}] {name}: {result.status} in {seconds:.0f} s{' - ' + result.detail if result.detail else ''}", flush=True)

    # ---------------------------------------------------------------------------------------
    def run(self) -> Path:
        s = self.s
        from nnunet_tavr.phantom import subject_id, write_dataset

        t_start = time.perf_counter()
        n_done = sum((s.totalseg / subject_id(i) / "truth.json").is_file() for i in range(s.cases))
        self.stage(
            "phantoms",
            done=n_done == s.cases and (s.totalseg / "meta.csv").is_file(),
            action=lambda: write_dataset(s.totalseg, s.cases, s.seed, s.shape, s.spacing, no_heart=s.no_heart),
            detail=lambda: f"{s.cases} subjects {s.shape} at {s.spacing} mm ({len(s.no_heart)} chest-less)",
            outputs=lambda: [s.totalseg],
        )
        valve_mm, annulus_mm = s.rule_mm
        self.stage(
            "convert",
            done=(s.dataset_raw / "dataset.json").is_file() and (s.dataset_raw / "manifest.csv").is_file(),
            action=lambda: self.run_cmd("convert", [
                "nnunet-tavr", "convert", str(s.totalseg), "-d", str(DATASET_ID), "-n", "TAVR", "--raw", str(s.raw),
                "--qc", "--valve-mm", str(valve_mm), "--annulus-mm", str(annulus_mm), "--seed", str(s.seed),
            ]),
            detail=self._conversion_summary,
            outputs=lambda: [s.dataset_raw],
        )
        plans_file = s.preprocessed / DATASET_NAME / f"{s.plans}.json"
        self.stage("plan_and_preprocess", done=plans_file.is_file(), action=self._plan, detail=lambda: f"plans {s.plans}", outputs=lambda: [plans_file])
        for trainer in s.trainers:
            folder = s.trained_folder(trainer)
            epochs = self._epochs(trainer)
            self.stage(
                f"train {trainer}",
                done=(folder / "checkpoint_final.pth").is_file(),
                action=lambda t=trainer, e=epochs: self._train(t, e),
                detail=lambda f=folder: self._online_dice(f),
                outputs=lambda f=folder: [f],
            )
        test_cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (s.dataset_raw / "imagesTs").glob("*_0000.nii.gz"))
        if not test_cases:
            raise DemoError(f"no test cases in {s.dataset_raw / 'imagesTs'}: conversion kept too few subjects")
        for trainer in s.trainers:
            out = s.predictions(trainer)
            self.stage(
                f"predict {trainer}",
                done=all((out / f"{c}.nii.gz").is_file() for c in test_cases),
                action=lambda t=trainer, o=out: self.run_cmd(f"predict_{t}", [
                    "nnUNetv2_predict", "-i", str(s.dataset_raw / "imagesTs"), "-o", str(o), "-d", str(DATASET_ID),
                    "-c", CONFIGURATION, "-p", s.plans, "-tr", t, "-f", "0", "--disable_tta", "-device", s.device,
                    "-npp", "1", "-nps", "1", "--continue_prediction",
                ]),
                detail=lambda: f"{len(test_cases)} test cases",
                outputs=lambda o=out: [o],
            )
        compare_dir = s.out / "compare"
        self.stage(
            "compare",
            done=False,  # cheap, and its cache makes a rerun instant
            action=lambda: self.run_cmd("compare", [
                "nnunet-tavr", "compare", "-d", str(DATASET_ID), "-c", CONFIGURATION, "-tr", *s.trainers, "-p", s.plans,
                "-f", "0", "--no-validation", "--test", *[str(s.predictions(t)) for t in s.trainers],
                "--test-labels", str(s.dataset_raw / "labelsTs"), "-o", str(compare_dir), "-np", "1",
            ]),
            outputs=lambda: [compare_dir],
        )
        case = test_cases[0]
        measure_dir = s.out / "measure"
        sources = {"prediction": s.predictions(s.trainers[0]) / f"{case}.nii.gz", "reference": s.dataset_raw / "labelsTs" / f"{case}.nii.gz"}

        def measure():
            for kind, seg in sources.items():
                self.run_cmd("measure", ["nnunet-tavr", "measure", str(seg), "--ct", str(s.dataset_raw / "imagesTs" / f"{case}_0000.nii.gz"), "-o", str(measure_dir / kind)])

        self.stage("measure", done=False, action=measure, detail=lambda: f"case {case}: {s.trainers[0]} prediction and reference", outputs=lambda: [measure_dir])
        report = write_report(s, self.results, self.logs, case, compare_dir, measure_dir, time.perf_counter() - t_start)
        return report

    # ---------------------------------------------------------------------------------------
    def _plan(self) -> None:
        s = self.s
        env_np = os.environ.get("nnUNet_def_n_proc", "2" if not s.gpu else "8")
        self.run_cmd("plan_and_preprocess", [
            "nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIGURATION, "-np", env_np, "-npfp", env_np,
            "--verify_dataset_integrity",
        ])
        if not s.gpu:
            from nnunet_tavr.tiny_plans import write_tiny_plans

            write_tiny_plans(s.preprocessed / DATASET_NAME, target_plans=DEMO_PLANS, configurations=(CONFIGURATION,),
                             features=DEMO_FEATURES)
        # Our seeded folds (test cases never in any fold) replace the ones nnU-Net would draw.
        self.run_cmd("plan_and_preprocess", ["nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "TAVR", "--raw", str(s.raw), "--preprocessed", str(s.preprocessed), "--install-splits"])

    def _train(self, trainer: str, epochs: int) -> None:
        s = self.s
        cmd = ["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, "0", "-p", s.plans, "-tr", trainer, "-device", s.device]
        self.run_cmd(f"train_{trainer}", cmd, progress=(r"Epoch (\d+)", epochs))

    @staticmethod
    def _epochs(trainer: str) -> int:
        from nnunet_tavr.trainers.variants import demo_trainers

        return getattr(demo_trainers, trainer).num_epochs

    def _conversion_summary(self) -> str:
        rows = read_manifest(self.s.dataset_raw / "manifest.csv")
        kept = sum(r["kept"] == "1" for r in rows)
        return f"{kept} of {len(rows)} subjects kept"

    @staticmethod
    def _online_dice(folder: Path) -> str:
        """The last online (pseudo) Dice nnU-Net logged for this training, as a progress figure."""
        logs = sorted(folder.glob("training_log_*.txt"))
        found = re.findall(r"Pseudo dice \[(.*?)\]", logs[-1].read_text()) if logs else []
        if not found:
            return ""
        values = [float(v) for v in re.findall(r"[-+]?\d*\.\d+|nan", found[-1]) if v != "nan"]
        return f"last online Dice (nnU-Net's log) {sum(values) / len(values):.2f}" if values else ""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least

    parser.add_argument("-o", "--output", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    parser.add_argument("--cases", type=at_least(7), default=None, help="phantom subjects, at least 7: 5 cross-validation folds, a test case, one excluded subject (default 20: 3 test cases)")
    parser.add_argument("--quick", action="store_true", help="smoke run: nnUNetTrainerFocalSR_quick only, 1,200 iterations (~3.5 min on CPU)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="phantom and split seed (default 0)")


def main(args: argparse.Namespace) -> int:
    from nnunet_tavr.safepaths import check_output_dir

    check_output_dir(args.output)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = args.cases or 20
    settings = Settings(out=args.output.resolve(), device=device, quick=args.quick, cases=cases, seed=args.seed)
    settings.out.mkdir(parents=True, exist_ok=True)
    try:
        report = Pipeline(settings).run()
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(f"report: {report}")
    return 0
