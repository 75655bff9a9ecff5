"""How often each language pair is drawn (--sampling-method): uniformly, by temperature over data sizes, or
not at all (concat and RoundRobin read every pair's data once an epoch)."""

import logging
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "SAMPLING_METHODS",
    "SamplingMethod",
    "make_ratio_sampling",
    "make_temperature_sampling",
    "temperature_sampling",
    "uniform",
]

SAMPLING_METHODS = ("uniform", "temperature", "concat", "RoundRobin")
SamplingFunc = Callable[[Sequence[int]], Sequence[float]]


def uniform(dataset_sizes: Sequence[int]) -> list[float]:
    return [1.0] * len(dataset_sizes)


def temperature_sampling(dataset_sizes: Sequence[int], temp: float) -> list[float]:
    """Pair i's weight (size_i / total) ** (1 / temp): T=1 keeps the data's proportions, larger T flattens
    them towards uniform (the weights are normalised where they are used)."""
    total_size = sum(dataset_sizes)
    return [(size / total_size) ** (1.0 / temp) for size in dataset_sizes]


def make_temperature_sampling(temp: float = 1.0) -> SamplingFunc:
    def sampling_func(dataset_sizes: Sequence[int]) -> list[float]:
        return temperature_sampling(dataset_sizes, temp)

    return sampling_func


def make_ratio_sampling(ratios: Sequence[float]) -> SamplingFunc:
    def sampling_func(dataset_sizes: Sequence[int]) -> Sequence[float]:
        return ratios

    return sampling_func


class SamplingMethod:
    """fairseq's sampler: `sampling_method_selector()` gives the function from data sizes to sampling
    weights, or None (concatenate). A subclass with `is_adaptive()` samples by temperature."""

    @staticmethod
    def build_sampler(args: Any, task: Any) -> "SamplingMethod":
        return SamplingMethod(args, task)

    def __init__(self, args: Any, task: Any):
        self.args = args
        self.task = task

    def is_adaptive(self) -> bool:
        return False

    def sampling_method_selector(self) -> SamplingFunc | None:
        method = self.args.sampling_method
        logger.info(f"selected sampler: {method}")
        if method == "uniform":
            return uniform
        if method == "temperature" or self.is_adaptive():
            return make_temperature_sampling(float(self.args.sampling_temperature))
        return None  # concat, RoundRobin: every pair's data as it is
