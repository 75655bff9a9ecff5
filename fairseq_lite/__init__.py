"""fairseq-lite: fairseq's workflow (preprocess -> train -> eval) on a modern PyTorch/Hydra stack."""

__version__ = "0.1.0"
