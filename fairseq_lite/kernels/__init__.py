"""The compiled kernel path (fairseq_lite._C) and how Python chooses between it and the references.

Every compiled kernel has a pure-PyTorch reference next to its Python wrapper. The wrapper asks
`compiled_op(name, device)` for the compiled operator and falls back to the reference when it gets
None: the extension was not built, it has no kernel for that device (a CPU-only build on a GPU), or
the user forced the reference with FAIRSEQ_LITE_FORCE_REFERENCE=1. Which path runs is logged once.

The extension is built by setup.py with torch's BuildExtension (`pip install --no-build-isolation
-e .`); the C++ sources are in fairseq_lite/csrc/.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

logger = logging.getLogger(__name__)

FORCE_REFERENCE_ENV = "FAIRSEQ_LITE_FORCE_REFERENCE"

_loaded: bool | None = None  # None: not tried yet
_reason = ""
_forced: bool | None = None  # set by force_reference(); None: follow the environment variable
_logged = False


def _env_forces_reference() -> bool:
    return os.environ.get(FORCE_REFERENCE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _load() -> bool:
    global _loaded, _reason
    if _loaded is None:
        try:
            from fairseq_lite import _C  # noqa: F401  (importing registers torch.ops.fairseq_lite.*)

            _loaded = True
            _reason = f"fairseq_lite._C ({'C++ and CUDA' if _C.with_cuda else 'C++'})"
        except ImportError as e:
            _loaded = False
            _reason = f"fairseq_lite._C is not built ({e}); reinstall with `pip install --no-build-isolation -e .`"
    return _loaded


def extension_available() -> bool:
    """Whether the compiled extension imports (whether or not the reference is forced)."""
    return _load()


def using_compiled() -> bool:
    """Whether kernels run compiled: the extension is there and the reference is not forced."""
    forced = _env_forces_reference() if _forced is None else _forced
    return not forced and _load()


def _log_choice_once() -> None:
    global _logged
    if _logged:
        return
    _logged = True
    if using_compiled():
        logger.info(f"kernels: compiled, from {_reason}")
    elif _load():
        logger.info(f"kernels: PyTorch reference ({FORCE_REFERENCE_ENV} is set)")
    else:
        logger.info(f"kernels: PyTorch reference; {_reason}")


def compiled_op(name: str, device: torch.device):
    """torch.ops.fairseq_lite.<name> when it can run on `device` here, else None (use the reference)."""
    _log_choice_once()
    if not using_compiled():
        return None
    try:
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fairseq_lite::{name}", _dispatch_key(device)):
            return None
    except RuntimeError:  # no such operator in this build
        return None
    return getattr(torch.ops.fairseq_lite, name)


def _dispatch_key(device: torch.device) -> str:
    return {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type, "CPU")


@contextmanager
def force_reference(enabled: bool = True) -> Iterator[None]:
    """Run the block on the reference kernels (enabled=True) or the compiled ones (False) — for tests
    and benchmarks that compare the two paths in one process."""
    global _forced
    previous = _forced
    _forced = enabled
    try:
        yield
    finally:
        _forced = previous
