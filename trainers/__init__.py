"""Losses, networks and ``nnUNetTrainer`` variants (installed as ``nnunet_tavr.trainers``).

The trainer classes live in ``variants/`` (like nnU-Net's own ``variants`` folder); that folder is
what ``nnunet-tavr trainer-path`` prints for ``$nnUNet_extTrainer``.  nnU-Net imports the modules of
that folder as top-level modules, so every module here uses absolute imports only.
"""
