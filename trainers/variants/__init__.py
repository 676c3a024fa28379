"""``nnUNetTrainer`` subclasses found by nnU-Net through ``$nnUNet_extTrainer``.

nnU-Net imports each module of this folder as a *top-level* module while it searches for a trainer
name, so modules here use absolute imports (``from nnunet_tavr.trainers... import ...``) only.
"""
