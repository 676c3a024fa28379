"""Landmark heatmap trainers for the hinge-point dataset (scheme ``hinge``: one labelled sphere per
landmark), issue 15 / seed 003.

=============================== ======================================================= =========
trainer                         output read as / loss                                    baseline
=============================== ======================================================= =========
nnUNetTrainerHeatmapOT          per-landmark softmax over voxels; sliced W2 OT to a      proposed
                                Gaussian (sigma in mm, cost in mm) + GLiP + CE anchor
nnUNetTrainerHeatmapMSE         per-landmark heatmap; L2 to a Gaussian of peak 1         yes
nnUNetTrainer                   nnU-Net's own segmentation of the spheres (centre of     yes
                                mass of each predicted label at inference)
=============================== ======================================================= =========

Everything but the loss and its targets is nnU-Net's: planning, cropping, resampling, foreground
sampling, augmentation, deep supervision (nnU-Net's scales and weights; the loss takes the lists
itself, to batch the scales, and each output gets its own Gaussian at its own spacing),
2d / 3d_fullres / 3d_lowres, splits, checkpoints and ``nnUNetv2_predict``. The network keeps
nnU-Net's ``1 + L`` output channels; landmark ``l``'s logit is ``z_l - z_0`` (channel 0 is the
reference), which nnU-Net's saved channel softmax gives back exactly (``log P_l - log P_0``), see
``nnunet-tavr landmarks``. Hyper-parameters are class attributes: an ablation is a one-line subclass::

    class nnUNetTrainerHeatmapOTW1(nnUNetTrainerHeatmapOT):
        squared = False   # sqrt of the divergence: a distance in mm

nnU-Net imports this module as a top-level module while searching ``$nnUNet_extTrainer``, hence the
absolute imports.
"""

from __future__ import annotations


import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tavr.trainers.landmark_losses import HeatmapMSELoss, HeatmapOTLoss
from nnunet_tavr.trainers.landmark_targets import LandmarkCentreTransform
from nnunet_tavr.trainers.augmentation import LateralityPreservingMirroring
from nnunet_tavr.trainers.extra_targets import ExtraTargetChannels
from nnunet_tavr.trainers.schedules import Smoke


class LandmarkHeatmaps(ExtraTargetChannels):
    """Mixin: landmark-centre targets in the data pipeline and a heatmap loss (:meth:`_heatmap_loss`).

    ``validation_step`` is nnU-Net's; its online (pseudo) Dice sees the segmentation channel only,
    while the loss sees the whole target.
    """

    #: Gaussian target's standard deviation (mm)
    sigma_mm: float = 2.0

    def _heatmap_loss(self, scale_weights=None) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def landmark_labels(self) -> list[int]:
        return [int(v) for v in self.label_manager.foreground_labels]

    def _build_loss(self):
        if self.label_manager.has_regions:
            raise ValueError(f"{type(self).__name__}: landmark datasets use plain labels (one sphere per landmark), not regions")
        loss = super()._build_loss()  # nnU-Net decides on deep supervision and its weights
        if isinstance(loss, DeepSupervisionWrapper):
            # the heatmap losses take nnU-Net's lists and weights themselves, to batch the scales
            return self._heatmap_loss(scale_weights=loss.weight_factors)
        return self._heatmap_loss()

    @classmethod
    def _with_centres(cls, transforms, labels):
        steps = transforms.transforms
        at = next((i for i, t in enumerate(steps) if type(t).__name__ == "DownsampleSegForDSTransform"), len(steps))
        steps.insert(at, LandmarkCentreTransform(labels))
        return transforms

    @classmethod
    def get_training_transforms(cls, *args, **kwargs):
        labels = kwargs.get("foreground_labels", args[7] if len(args) > 7 else None)
        return cls._with_centres(super().get_training_transforms(*args, **kwargs), labels)

    @classmethod
    def get_validation_transforms(cls, *args, **kwargs):
        labels = kwargs.get("foreground_labels", args[2] if len(args) > 2 else None)
        return cls._with_centres(super().get_validation_transforms(*args, **kwargs), labels)

    @staticmethod
    def segmentation_channel(target):
        # the label channel travels as float with the constant centre channels
        return target[:, :1].round().long()

    def _loss_geometry(self) -> dict:
        cm = self.configuration_manager
        return {"num_landmarks": len(self.landmark_labels), "spacing": list(cm.spacing), "patch_size": list(cm.patch_size),
                "sigma_mm": self.sigma_mm}


class nnUNetTrainerHeatmapOT(LateralityPreservingMirroring, LandmarkHeatmaps, nnUNetTrainer):
    """Seed 003's loss: OT between each landmark's spatial softmax and a Gaussian, plus GLiP."""

    #: OT distance: "sliced" (exact sliced W2^2 over lattice directions, O(N)) or "sinkhorn"
    #: (debiased Sinkhorn divergence, separable log-domain kernel); see benchmarks/landmark_loss.py
    ot: str = "sliced"
    #: slicing directions of "sliced": "axes", "faces" (axes + face diagonals) or "lattice"
    directions: str = "faces"
    #: entropic blur sqrt(eps) of the Sinkhorn divergence (mm)
    blur_mm: float = 1.0
    #: squared cost (W2^2-like, mm^2) or its square root (a distance in mm)
    squared: bool = True
    #: weight of the grid-based Lipschitz penalty and its bound (x the target's steepest slope)
    glip_weight: float = 1.0
    glip_factor: float = 1.0
    #: weight of the channel cross-entropy on the spheres that anchors the logits across patches
    ce_weight: float = 1.0

    def _heatmap_loss(self, scale_weights=None):
        return HeatmapOTLoss(**self._loss_geometry(), blur_mm=self.blur_mm, squared=self.squared,
                             glip_weight=self.glip_weight, glip_factor=self.glip_factor, ot=self.ot,
                             directions=self.directions, ce_weight=self.ce_weight, scale_weights=scale_weights)


class nnUNetTrainerHeatmapMSE(LateralityPreservingMirroring, LandmarkHeatmaps, nnUNetTrainer):
    """Baseline: L2 regression of a Gaussian heatmap (peak 1); absent landmarks regress to 0."""

    #: weight of the Gaussian as a whole against the whole background (voxels weighted
    #: ``1 + peak_weight * N / sum(target) * target``; see HeatmapMSELoss)
    peak_weight: float = 1.0

    def _heatmap_loss(self, scale_weights=None):
        return HeatmapMSELoss(**self._loss_geometry(), peak_weight=self.peak_weight, scale_weights=scale_weights)


class nnUNetTrainerHeatmapOT_smoke(Smoke, nnUNetTrainerHeatmapOT):
    """CPU smoke run: 2 epochs x 3 iterations."""


class nnUNetTrainerHeatmapMSE_smoke(Smoke, nnUNetTrainerHeatmapMSE):
    """CPU smoke run: 2 epochs x 3 iterations."""
