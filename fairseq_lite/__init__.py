"""fairseq-lite: fairseq's workflow (preprocess -> train -> eval) on a modern PyTorch/Hydra stack."""

import os

# torch's CPU allocator backs large tensors with transparent huge pages when this is set: every update
# allocates fresh [tokens, vocab] logits and their gradient, and without it their page faults cost
# ~15-20% of a CPU training step (measured with benchmarks/profile_train_step.py). Set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
