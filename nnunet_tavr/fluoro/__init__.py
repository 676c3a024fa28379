"""Angiography frames of the aortic root rendered from CT with TAVR labels (seed 002's task).

- :mod:`.cases`: the inputs (an nnU-Net TAVR dataset, folders of cases with or without labels).
- :mod:`.anatomy`: what a case contributes once (de-enhanced attenuation, annulus plane,
  geodesic distances along the aorta, the mask object, the bolus, the pigtail's path).
- :mod:`.projector`: cone-beam line integrals (Joseph's method in torch).
- :mod:`.render`: one frame (pose around the coplanar view, contrast, catheter, degradations).
- :mod:`.run`: a case's frames on disk (``frames.json``, resume); :mod:`.figures`; :mod:`.cli`
  (``nnunet-tavr fluoro``).

The C-arm geometry itself (angulations, S-curve, cusp views, projection matrices) is
:mod:`nnunet_tavr.carm`. See ``docs/fluoroscopy.md``.
"""
