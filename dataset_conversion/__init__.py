"""nnU-Net raw datasets from TotalSegmentator masks or labelled CTs (the folder ``dataset_conversion/``
is installed as ``nnunet_tavr.dataset_conversion``).

A dataset is a scheme (:mod:`.scheme`, :mod:`.schemes`); the machinery every scheme shares is
discovery (:mod:`.layouts`), the dataset folder and its case records (:mod:`.outputs`), the driver
(:mod:`.convert`), image copies (:mod:`.images`), splits (:mod:`.splits`) and the final placement,
``dataset.json`` and manifest (:mod:`.finalize`); :mod:`.cli` is ``nnunet-tavr convert``.
"""
