"""Install fairseq-lite.

    pip install torch==2.13.0            # first: pip must never pick a torch for us
    pip install --no-build-isolation -e .

--no-build-isolation matters twice: the compiled extension (fairseq_lite._C) is built against the
torch already installed, and an isolated build environment would download a new torch to build with.
FAIRSEQ_LITE_BUILD_EXT=0 installs without the extension (every kernel then runs its PyTorch reference);
FAIRSEQ_LITE_BUILD_CUDA=0 builds only the C++ kernels even where CUDA is available.
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def extensions():
    """fairseq_lite._C from fairseq_lite/csrc: the C++ kernels always, the CUDA ones when both nvcc and
    a CUDA build of torch are present."""
    if os.environ.get("FAIRSEQ_LITE_BUILD_EXT", "1") == "0":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as e:
        raise SystemExit(
            "fairseq-lite compiles its kernels against the installed torch, and none was found: "
            "run `pip install torch==2.13.0` first, then `pip install --no-build-isolation .` "
            "(or set FAIRSEQ_LITE_BUILD_EXT=0 to install without the kernels)"
        ) from e

    csrc = ROOT / "fairseq_lite" / "csrc"
    cpp = sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*.cpp"))
    cuda = sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*.cu"))
    cxx = ["-O3", "-fopenmp", "-std=c++17"]
    with_cuda = (
        bool(cuda)
        and torch.version.cuda is not None
        and CUDA_HOME is not None
        and os.environ.get("FAIRSEQ_LITE_BUILD_CUDA", "1") != "0"
    )
    if with_cuda:
        ext = CUDAExtension(
            "fairseq_lite._C",
            cpp + cuda,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++17"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension("fairseq_lite._C", cpp, extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": BuildExtension}


def config_files():
    # The Hydra config tree ships inside the package as fairseq_lite/config, so regular (non-editable)
    # installs find it too; in a source checkout it is read from ./config directly.
    return [str(p.relative_to(ROOT / "config")) for p in (ROOT / "config").rglob("*.yaml")]


ext_modules, cmdclass = extensions()

setup(
    name="fairseq-lite",
    version="0.1.0",
    description="fairseq's workflow (preprocess, train, generate, eval-lm) on a modern PyTorch and Hydra stack",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # every package under fairseq_lite/ and fairseq_cli/, plus the config tree shipped as package data
    packages=find_packages(include=["fairseq_lite", "fairseq_lite.*", "fairseq_cli"]) + ["fairseq_lite.config"],
    package_dir={"fairseq_lite.config": "config"},
    package_data={"fairseq_lite.config": config_files()},
    install_requires=[
        "torch>=2.2,<2.14",  # a range that the local torch==2.13.0 satisfies: never fetch another
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        "numpy>=1.24",
        "sentencepiece>=0.1.99",
        "tensorboard>=2.12",
        "tqdm>=4.60",
        "sacrebleu>=2.3",
        # fairseq's --tokenizer moses, --bpe subword_nmt/fastbpe and --bpe gpt2/hf_byte_bpe (data/encoders)
        "sacremoses>=0.0.53",
        "subword-nmt>=0.3.8",
        "tokenizers>=0.13",
    ],
    extras_require={
        # Hydra plugins fairseq-hydra-train is tested with: SLURM launching and Optuna sweeps.
        "slurm": ["hydra-submitit-launcher>=1.2"],
        "nltk": ["nltk>=3.8"],  # --tokenizer nltk (its punkt model is a separate download)
        "sweep": ["hydra-optuna-sweeper>=1.2"],
        # ruff is pinned: another version could format the same code differently and fail the check.
        # transformers 4.34 is the last with TransfoXL, the model of fairseq's examples/truncated_bptt
        # plugin that tests/test_fairseq_plugins.py runs (a test dependency only).
        "test": [
            "pytest>=7",
            "hydra-submitit-launcher>=1.2",
            "hydra-optuna-sweeper>=1.2",
            "ruff==0.16.9",
            "transformers==4.34.1",
            "nltk>=3.8",
        ],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={
        "console_scripts": [
            "fairseq-preprocess = fairseq_cli.preprocess:cli_main",
            "fairseq-train = fairseq_cli.train:cli_main",
            "fairseq-hydra-train = fairseq_cli.hydra_train:cli_main",
            "fairseq-eval-lm = fairseq_cli.eval_lm:cli_main",
            "fairseq-generate = fairseq_cli.generate:cli_main",
            "fairseq-interactive = fairseq_cli.interactive:cli_main",
            "fairseq-average-checkpoints = fairseq_cli.average_checkpoints:cli_main",
            "fairseq-score = fairseq_cli.score:cli_main",
        ]
    },
)
