"""Build nnU-Net raw datasets with TAVR labels (installed as ``nnunet_tavr.dataset_conversion``)."""
