"""TAVR measurements from a segmentation (annulus, aortic root, ascending aorta, iliac access).

``measure_tavr(labels, spacing)`` returns a :class:`~nnunet_tavr.measurement.record.MeasurementRecord`;
``nnunet-tavr measure`` writes it as ``measurements.json`` with a one-page ``measurements.png``.
"""

__all__ = ["measure_tavr", "MeasurementRecord"]


def __getattr__(name):  # lazy: ``nnunet-tavr measure --help`` must not import scipy / skimage
    if name == "measure_tavr":
        from nnunet_tavr.measurement.tavr import measure_tavr

        return measure_tavr
    if name == "MeasurementRecord":
        from nnunet_tavr.measurement.record import MeasurementRecord

        return MeasurementRecord
    raise AttributeError(name)
