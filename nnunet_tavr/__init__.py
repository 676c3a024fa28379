"""nnunet-tavr: an nnU-Net v2 extension for preoperative TAVR planning on CT.

Importing this package is cheap on purpose (no torch, no nnU-Net): the CLI must start fast.
The repository's top-level folders are installed inside this namespace:

- ``nnunet_tavr.label_derivation`` (folder ``label_derivation/``): rule-derived labels from coarse
  TotalSegmentator masks.
- ``nnunet_tavr.dataset_conversion`` (folder ``dataset_conversion/``): dataset schemes and the
  conversion machinery to nnU-Net raw datasets.
- ``nnunet_tavr.trainers`` (folder ``trainers/``): losses, networks and ``nnUNetTrainer`` variants.

One module per idea, used by everything else: :mod:`.geometry` (planes, frames, plane sampling,
boxes in voxels and mm), :mod:`.totalseg` (TotalSegmentator's vocabulary), :mod:`.subject` (reading a
case's masks), :mod:`.labels` (label values and colours), :mod:`.folders` (nnU-Net's folders),
:mod:`.io` (images, atomic writes, figures), :mod:`.errors` (error classes and their codes),
:mod:`.argtypes` and :mod:`.safepaths` (checked command-line input), :mod:`.phantom` (synthetic
subjects with known truth).
"""

__version__ = "0.1.0"
