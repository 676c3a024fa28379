"""Rule-based TAVR pseudo-labels (installed as ``nnunet_tavr.label_derivation``)."""
