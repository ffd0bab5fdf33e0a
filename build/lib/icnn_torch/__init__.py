"""icnn-torch: a Caffe-free PyTorch port of the Deep Image Reconstruction demo.

Shen, Horikawa, Majima & Kamitani (2019), "Deep image reconstruction from human brain
activity", PLOS Computational Biology 15(1): e1006633.

The modules mirror the original ``icnn`` package: ``icnn_lbfgs``, ``icnn_gd``,
``icnn_dgn_gd``, ``icnn_dgn_lbfgs`` (each with ``reconstruct_image``) and ``utils``.
"""

__version__ = "0.1.0"
