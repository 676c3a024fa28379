"""Whole-heart analysis (seed 004): volumes, LV mass and agreement of cardiac segmentations (``nnunet-tavr cardiac``)."""
