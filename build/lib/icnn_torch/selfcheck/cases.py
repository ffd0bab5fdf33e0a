"""The eight test cases of the original icnn's ``test.py`` and their selection by name.

Each case is a folder ``test/<name>/`` of KamitaniLab/icnn run by one of the four engines:
a 3-iteration ``_quick`` variant and a 200/500-iteration one per engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError
from ..recon.engines import EngineInfo, engine_info

__all__ = ["Case", "CASES", "select_cases"]


@dataclass(frozen=True)
class Case:
    """One test case of the original suite: ``test/<name>/`` run by engine ``engine``."""

    name: str
    engine: str

    @property
    def info(self) -> EngineInfo:
        return engine_info(self.engine)

    @property
    def quick(self) -> bool:
        """The 3-iteration variant."""
        return self.name.endswith("_quick")

    @property
    def uses_generator(self) -> bool:
        return self.info.uses_generator

    @property
    def start_file(self) -> str:
        """The start the original passes: an image for pixel engines, a latent for DGN."""
        return "initial_gen_feat.mat" if self.uses_generator else "initial_img.png"

    def path(self, name: str) -> str:
        """Path of one of the case's files in the original repository."""
        return f"test/{self.name}/{name}"

    @property
    def files(self) -> tuple[str, ...]:
        """The case's reference files (repository paths)."""
        return tuple(self.path(n) for n in
                     ("options.pkl", "recon_img.mat", "loss_list.mat", self.start_file))


_ENGINE_NAMES = ("icnn_gd", "icnn_lbfgs", "icnn_dgn_gd", "icnn_dgn_lbfgs")
#: The eight cases of the original ``test.py``: the quick ones first (seconds each), then
#: the 200/500-iteration ones.
CASES: tuple[Case, ...] = tuple(Case(e + suffix, e) for suffix in ("_quick", "")
                                for e in _ENGINE_NAMES)
_CASE_GROUPS = {"quick": [c for c in CASES if c.quick], "full": [c for c in CASES if not c.quick],
                "all": list(CASES)}


def select_cases(spec: str | Sequence[str]) -> list[Case]:
    """Cases from names and the groups ``quick``, ``full``, ``all`` (comma-separated or a
    sequence), in :data:`CASES` order; a :class:`ConfigError` lists the valid names."""
    words = spec.split(",") if isinstance(spec, str) else list(spec)
    by_name = {c.name: c for c in CASES}
    chosen: set[str] = set()
    for word in (w.strip() for w in words):
        if not word:
            continue
        if word in _CASE_GROUPS:
            chosen.update(c.name for c in _CASE_GROUPS[word])
        elif word in by_name:
            chosen.add(word)
        else:
            raise ConfigError(f"unknown case {word!r}; choose from {', '.join(_CASE_GROUPS)} "
                              f"or {', '.join(by_name)}")
    if not chosen:
        raise ConfigError("no case chosen")
    return [c for c in CASES if c.name in chosen]
