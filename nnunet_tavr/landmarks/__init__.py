"""Landmarks (aortic-valve hinge points) from nnU-Net predictions: extraction in world mm, errors
against a reference, figures, and the landmark comparison of trainers.

- :mod:`.extract`: heatmap (peak + local refinement) and segmentation (centre of mass) readings.
- :mod:`.reference`: reference points from ``landmarks.json``, a dataset, or phantom ``truth.json``.
- :mod:`.report`: errors (median, IQR, max, share under 2 mm), JSON / CSV, the per-case figure.
- :mod:`.compare`: per-case mean landmark error per trainer across folds (``compare --landmarks``).
- :mod:`.cli`: ``nnunet-tavr landmarks``.
"""
