"""The nets: VGG19 and the DeePSiM fc7 generator as PyTorch modules, the Caffe weight-file
reader, weight loading and caching, feature extraction from any ``nn.Module``, and the
choice of device.

Modules: :mod:`~icnn_torch.nets.tables` (the layer tables and input convention; no
torch), :mod:`~icnn_torch.nets.vgg19`, :mod:`~icnn_torch.nets.generator`,
:mod:`~icnn_torch.nets.caffemodel`, :mod:`~icnn_torch.nets.weights`,
:mod:`~icnn_torch.nets.extractor`, :mod:`~icnn_torch.nets.device`. The public face for
users is :mod:`icnn_torch.models` and :mod:`icnn_torch.features`.
"""
