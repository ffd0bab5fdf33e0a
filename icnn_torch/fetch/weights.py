"""The items of the nets: ``vgg19`` and ``generator`` (a caffemodel, or with ``pytorch``
KamitaniLab's ``.pt`` conversion) and ``fc7_bounds`` (the generator's input bounds, the
original repository's ``fc7.txt``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import IcnnTorchError
from ..nets.tables import GENERATOR_PARAMETERS, VGG19_PARAMETERS
from ..store.layout import (FC7_BOUNDS_RELPATH, GENERATOR_CAFFEMODEL_RELPATH,
                            GENERATOR_PT_RELPATH, VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH)
from ..store.published import FigshareFile
from .base import Check, Item, Place, Size, check_file, figshare_url
from .http import fetch, remote_url
from .unpack import take_member

__all__ = ["VGG19_SIZE", "VGG19_MD5", "FC7_BOUNDS_SIZE", "FC7_BOUNDS_MD5",
           "DEEPSIM_GENERATOR_MEMBER", "KAMITANI_VGG19", "KAMITANI_GENERATOR",
           "BUNDLE_BOUNDS_NAME", "Weights", "Fc7Bounds"]

#: Size of VGG_ILSVRC_19_layers.caffemodel.
VGG19_SIZE = 574_671_192
#: Its md5. The VGG group and the Model Zoo gist publish none; three independent public
#: sources agree on this one (jcjohnson/neural-style issue 49, a neural-style launcher
#: script that also states the size above, KelpNet's VGG19 sample).
VGG19_MD5 = "b5c644beabd7cf06bdd9065cfd674c97"
#: Size and md5 of the original repository's data/act_range/3x/fc7.txt.
FC7_BOUNDS_SIZE = 8192
FC7_BOUNDS_MD5 = "2c8c35ff45e71165460facc12cd4abf6"
#: The member of release_deepsim_v0.zip that is the fc7 generator.
DEEPSIM_GENERATOR_MEMBER = "release_deepsim_v0/fc7/generator.caffemodel"
#: KamitaniLab's PyTorch conversions (not part of article 7033577).
KAMITANI_VGG19 = FigshareFile("VGG_ILSVRC_19_layers.zip", 38225868, None,
                              "49f4d6dbf1024f33149352dfd309dc4d")
KAMITANI_GENERATOR = FigshareFile("bvlc_reference_caffenet_generator_ILSVRC2012_Training.zip",
                                  38361230, None, "bf9d4de43782cb019de733ed7cf84926")
#: Where the generator input bounds of KamitaniLab's bundle are kept, apart from the
#: original's ``fc7.txt`` (in the same folder).
BUNDLE_BOUNDS_NAME = "fc7_kamitanilab_pytorch_bundle.txt"


class Weights(Item):
    """VGG19 or the DeePSiM generator: a caffemodel, or KamitaniLab's ``.pt`` file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _rels(self) -> tuple[Path, Path]:
        return (VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH) if self.name == "vgg19" else \
            (GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH)

    def _bundle(self) -> FigshareFile:
        return KAMITANI_VGG19 if self.name == "vgg19" else KAMITANI_GENERATOR

    def _caffemodel_known(self) -> tuple[Optional[int], Optional[str]]:
        return (VGG19_SIZE, VGG19_MD5) if self.name == "vgg19" else (None, None)

    def targets(self, place: Place) -> List[Path]:
        caffe, pt = self._rels()
        return [Path(place.net_dir, pt if place.pytorch else caffe)]

    def size(self, place: Place) -> Size:
        known, _ = self._caffemodel_known()
        if known is not None and not place.pytorch:
            return Size(known)
        parameters = VGG19_PARAMETERS if self.name == "vgg19" else GENERATOR_PARAMETERS
        return Size(parameters * 4, estimated=True)  # float32 weights; a zip holds more

    def transient_size(self, place: Place) -> Size:
        if self.name == "vgg19" and not place.pytorch:
            return Size(0)
        return self.size(place)  # the release or bundle zip: at least the weights

    def verifiable_by_md5(self, place: Place) -> bool:
        return not place.pytorch and self._caffemodel_known()[1] is not None

    def describe(self, place: Place) -> str:
        target = self.targets(place)[0]
        if place.pytorch:
            return f"{self.name} -> {target} (from figshare file {self._bundle().name}; " \
                   f"{self.size(place)})"
        if self.name == "vgg19":
            return f"{self.name} -> {target} ({self.size(place)})"
        return f"{self.name} -> {target} (from release_deepsim_v0.zip; {self.size(place)})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        caffe, pt = (Path(place.net_dir, rel) for rel in self._rels())
        size, md5 = self._caffemodel_known()
        if caffe.exists() or not pt.is_file():  # a caffemodel is what the loaders take first
            found = check_file(caffe, size, md5, verify)
            path = caffe
        else:
            found, path = Check("present", how="presence"), pt
        if found.ok and verify and found.how != "md5":
            return self._load(path, found.how)
        return found

    def _load(self, path: Path, how: str) -> Check:
        """Load the weights (no md5 is known): a damaged file fails here."""
        from ..nets.weights import load_generator, load_vgg19  # torch: only under --verify
        load = load_vgg19 if self.name == "vgg19" else load_generator
        try:
            load(path, device="cpu", cache=False)
        except IcnnTorchError as err:
            reason = getattr(err, "reason", str(err))
            return Check("damaged", f"{path} cannot be loaded: {reason}", "loading")
        return Check("present", how=f"{how} and loading" if how != "presence" else "loading")

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        caffe, pt = (Path(place.net_dir, rel) for rel in self._rels())
        options = dict(progress=progress, timeout=timeout)
        if place.pytorch:
            if check.state != "absent":  # a damaged caffemodel would be loaded first
                caffe.unlink(missing_ok=True)
            bundle = self._bundle()
            bounds_folder = Path(place.data_dir, FC7_BOUNDS_RELPATH).parent
            bounds = (bounds_folder / BUNDLE_BOUNDS_NAME, Path(place.data_dir, FC7_BOUNDS_RELPATH),
                      FC7_BOUNDS_MD5) if self.name == "generator" else None
            fetch(figshare_url(bundle),
                  pt.with_name(bundle.name), md5=bundle.md5, **options,
                  processor=take_member(pt, lambda n: n.endswith((".pt", ".pth")),
                                        "PyTorch state dict (.pt)", bounds))
        elif self.name == "vgg19":
            fetch(remote_url("vgg19"), caffe, md5=VGG19_MD5, size=VGG19_SIZE, **options)
        else:  # the zip's member replaces a damaged caffemodel (written through a temp name)
            fetch(remote_url("deepsim"), caffe.with_name("release_deepsim_v0.zip"), **options,
                  processor=take_member(caffe, lambda n: n.endswith("fc7/generator.caffemodel"),
                                        DEEPSIM_GENERATOR_MEMBER))


class Fc7Bounds(Item):
    name = "fc7_bounds"

    def targets(self, place: Place) -> List[Path]:
        return [Path(place.data_dir, FC7_BOUNDS_RELPATH)]

    def size(self, place: Place) -> Size:
        return Size(FC7_BOUNDS_SIZE)

    def verifiable_by_md5(self, place: Place) -> bool:
        return True

    def describe(self, place: Place) -> str:
        return f"fc7_bounds -> {self.targets(place)[0]} ({self.size(place)})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        return check_file(self.targets(place)[0], FC7_BOUNDS_SIZE, FC7_BOUNDS_MD5, verify)

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        fetch(remote_url("fc7_bounds"), self.targets(place)[0], md5=FC7_BOUNDS_MD5,
              size=FC7_BOUNDS_SIZE, label="fc7.txt", progress=progress, timeout=timeout)
