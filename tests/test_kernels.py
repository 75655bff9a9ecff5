"""How the compiled kernels are chosen: built extension, forced reference, a device without a kernel."""

import os
import subprocess
import sys

import pytest
import torch

from fairseq_lite import kernels


def test_the_extension_is_built_when_the_setup_builds_it():
    # scripts/test.sh sets this (its setup builds fairseq_lite._C): a broken build must fail CI rather
    # than silently skip every compiled-path test.
    if os.environ.get("FAIRSEQ_LITE_REQUIRE_EXT") != "1":
        pytest.skip("FAIRSEQ_LITE_REQUIRE_EXT is not set")
    assert kernels.extension_available(), kernels._reason


@pytest.mark.skipif(not kernels.extension_available(), reason="fairseq_lite._C is not built")
def test_compiled_op_follows_force_reference_and_the_device():
    cpu = torch.device("cpu")
    with kernels.force_reference(False):
        assert kernels.compiled_op("fused_cross_entropy_forward", cpu) is not None
        assert kernels.compiled_op("no_such_kernel", cpu) is None
    with kernels.force_reference(True):
        assert kernels.compiled_op("fused_cross_entropy_forward", cpu) is None
    import fairseq_lite._C as C

    if not C.with_cuda:  # a C++-only build has no CUDA kernels: CUDA tensors take the reference
        with kernels.force_reference(False):
            assert kernels.compiled_op("fused_cross_entropy_forward", torch.device("cuda")) is None


@pytest.mark.parametrize("forced", ["1", "0"])
def test_the_environment_variable_forces_the_reference_and_the_choice_is_logged_once(forced):
    code = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from fairseq_lite.kernels import compiled_op, extension_available\n"
        "ops = [compiled_op('fused_cross_entropy_forward', torch.device('cpu')) for _ in range(3)]\n"
        "print('compiled' if ops[0] is not None else 'reference', extension_available())\n"
    )
    env = dict(os.environ, FAIRSEQ_LITE_FORCE_REFERENCE=forced)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    path, built = proc.stdout.split()
    assert proc.stderr.count("kernels: ") == 1, proc.stderr  # logged once, not per call
    if forced == "1" or built == "False":
        assert path == "reference" and "PyTorch reference" in proc.stderr
    else:
        assert path == "compiled" and "kernels: compiled" in proc.stderr
