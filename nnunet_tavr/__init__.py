"""nnunet-tavr: an nnU-Net v2 extension for preoperative TAVR planning on CT.

Importing this package is cheap on purpose (no torch, no nnU-Net): the CLI must start fast.
Subpackages:

- ``nnunet_tavr.label_derivation`` (folder ``label_derivation/``): valve, annulus and aortic-root
  pseudo-labels derived from coarse TotalSegmentator masks.
- ``nnunet_tavr.dataset_conversion`` (folder ``dataset_conversion/``): TotalSegmentator or own CTs
  to an nnU-Net raw dataset.
- ``nnunet_tavr.trainers`` (folder ``trainers/``): losses, networks and ``nnUNetTrainer`` variants.
"""

__version__ = "0.1.0"
