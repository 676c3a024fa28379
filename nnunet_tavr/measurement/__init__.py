"""TAVR measurements from a segmentation (annulus, aortic root, ascending aorta, iliac access)."""
