"""The README's library example, run as a user runs it, gives the scripts' results to the bit.

The example (the one ``python`` block of README's "Using the library") reproduces one
reconstruction of script 2 (pixel L-BFGS-B) and one of script 1 (the DGN) with the public
steps, reading the scripts' settings from the scripts. Here it runs in a project folder on
the synthetic tree, beside copies of scripts 1 and 2 whose iteration counts are cut to 2;
then the two scripts run in the same folder, and each ``recon_img`` the example saved must
equal the script's array exactly: the same functions on the same inputs in the same order,
on the same CPU with the same number of threads, give the same float32 arithmetic.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import scipy.io

from _project_tree import REPO, script_copy, script_env

SCRIPT1 = "1_reconstruct_natural_image"
SCRIPT2 = "2_reconstruct_natural_image_without_DGN"


def library_example() -> str:
    """The python block of README's "Using the library" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Using the library\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the library section has one python example"
    return blocks[0]


def test_readme_library_example_gives_the_scripts_arrays(project_root, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for folder in ("data", "net"):
        (work / folder).symlink_to(project_root / folder)
    script_copy(work, SCRIPT2, SCRIPT2, "opts = dict(opts, maxiter=2)\nsnapshot_every = 0")
    script_copy(work, SCRIPT1, SCRIPT1, "opts = dict(opts, iter_n=2)\nsnapshot_every = 0")
    (work / "example.py").write_text(library_example(), encoding="utf-8")
    env = script_env(work)
    del env["ICNN_TORCH_ROOT"]  # the example's paths as it gives them, from its folder

    example = subprocess.run([sys.executable, "example.py"], cwd=work, env=env, text=True,
                             capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    assert example.returncode == 0, example.stdout[-2000:] + example.stderr[-3000:]
    for script, label in ((SCRIPT2, "Img0002"), (SCRIPT1, "Img0009")):
        proc = subprocess.run([sys.executable, f"{script}.py", "--subjects", "S1", "--labels",
                               label], cwd=work, env=env, text=True, capture_output=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        ours = scipy.io.loadmat(work / "results" / "library" / "S1" / "VC" /
                                f"recon_img-{label}.mat")["recon_img"]
        theirs = scipy.io.loadmat(work / "results" / script / "S1" / "VC" /
                                  f"recon_img-{label}.mat")["recon_img"]
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape == (224, 224, 3)
        np.testing.assert_array_equal(ours, theirs)
