"""The dataset schemes of ``nnunet-tavr convert`` (see :mod:`nnunet_tavr.dataset_conversion.scheme`)."""
