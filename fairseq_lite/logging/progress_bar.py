"""Progress bars and log lines in fairseq's formats: json, simple, tqdm, none; plus tensorboard.

`log()` is called every `log_interval` updates with running stats, `print()` once at the end of an
epoch or validation. Both take what the metrics aggregators hold, rounded by their meters as fairseq's
are, and write numbers as fairseq does, so log lines stay what fairseq users parse.
"""

import json
import logging
import sys
from collections import OrderedDict
from collections.abc import Iterable
from numbers import Number

logger = logging.getLogger(__name__)


def format_stat(name: str, value) -> object:
    """A value as fairseq writes it in a log line: numbers in "{:g}" form (the meters have rounded them
    already, as the criterion and trainer asked: `loss 10.269`, `wps 13120.1`, `num_updates 3`)."""
    if isinstance(value, Number) and not isinstance(value, bool):
        return f"{value:g}"
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def progress_bar(
    iterator: Iterable,
    log_format: str | None = None,
    log_interval: int = 100,
    epoch: int | None = None,
    prefix: str | None = None,
    tensorboard_logdir: str | None = None,
    default_log_format: str = "tqdm",
):
    log_format = str(log_format) if log_format is not None else default_log_format
    if log_format == "tqdm" and not sys.stderr.isatty():
        log_format = "simple"  # a tqdm bar in a log file is unreadable
    bars = {"json": JsonProgressBar, "simple": SimpleProgressBar, "tqdm": TqdmProgressBar, "none": NoopProgressBar}
    bar = bars[log_format](iterator, epoch, prefix, log_interval)
    if tensorboard_logdir:
        bar = TensorboardProgressBarWrapper(bar, tensorboard_logdir)
    return bar


class BaseProgressBar:
    def __init__(
        self, iterable: Iterable, epoch: int | None = None, prefix: str | None = None, log_interval: int = 100
    ):
        self.iterable = iterable
        self.n = getattr(iterable, "n", 0)
        self.epoch = epoch
        self.log_interval = log_interval
        self.prefix = ""
        if epoch is not None:
            self.prefix += f"epoch {epoch:03d}"
        if prefix is not None:
            self.prefix += (" | " if self.prefix else "") + prefix

    def __len__(self):
        return len(self.iterable)

    def __iter__(self):
        for i, item in enumerate(self.iterable, start=self.n):
            self.i = i
            yield item

    def log(self, stats: dict, tag: str | None = None, step: int | None = None):
        raise NotImplementedError

    def print(self, stats: dict, tag: str | None = None, step: int | None = None):
        raise NotImplementedError

    def close(self):
        pass

    def _formatted(self, stats: dict) -> "OrderedDict[str, object]":
        return OrderedDict((k, format_stat(k, v)) for k, v in stats.items())

    def _str_pipes(self, stats: dict) -> str:
        return " | ".join(f"{k} {v}" for k, v in self._formatted(stats).items())


class JsonProgressBar(BaseProgressBar):
    def log(self, stats, tag=None, step=None):
        line = OrderedDict()
        if self.epoch is not None:
            line["epoch"] = self.epoch
            size = len(self.iterable) if hasattr(self.iterable, "__len__") else 0
            if size:
                line["update"] = round(self.epoch - 1 + (getattr(self, "i", 0) + 1) / size, 3)
        line.update(self._formatted(stats))
        logger.info(json.dumps(line))

    def print(self, stats, tag=None, step=None):
        line = OrderedDict()
        if self.epoch is not None:
            line["epoch"] = self.epoch
        for k, v in self._formatted(stats).items():
            line[f"{tag}_{k}" if tag else k] = v
        logger.info(json.dumps(line))


class SimpleProgressBar(BaseProgressBar):
    def log(self, stats, tag=None, step=None):
        size = len(self.iterable) if hasattr(self.iterable, "__len__") else 0
        position = f"{getattr(self, 'i', 0) + 1:>6d} / {size:d}" if size else ""
        body = ", ".join(f"{k}={v}" for k, v in self._formatted(stats).items())
        logger.info(f"{self.prefix}: {position} {body}")

    def print(self, stats, tag=None, step=None):
        logger.info(f"{self.prefix} | {self._str_pipes(stats)}")


class TqdmProgressBar(BaseProgressBar):
    def __init__(self, iterable, epoch=None, prefix=None, log_interval=100):
        super().__init__(iterable, epoch, prefix, log_interval)
        from tqdm import tqdm

        self.tqdm = tqdm(
            iterable,
            desc=self.prefix,
            leave=False,
            initial=self.n,
            total=len(iterable) if hasattr(iterable, "__len__") else None,
        )

    def __iter__(self):
        return iter(self.tqdm)

    def log(self, stats, tag=None, step=None):
        self.tqdm.set_postfix(self._formatted(stats), refresh=False)

    def print(self, stats, tag=None, step=None):
        self.tqdm.write(f"{self.tqdm.desc} | {self._str_pipes(stats)}")

    def close(self):
        self.tqdm.close()


class NoopProgressBar(BaseProgressBar):
    def log(self, stats, tag=None, step=None):
        pass

    def print(self, stats, tag=None, step=None):
        pass


class TensorboardProgressBarWrapper:
    """Also writes every numeric stat as a tensorboard scalar, one writer per tag (train/valid)."""

    def __init__(self, bar: BaseProgressBar, logdir: str):
        self.bar = bar
        self.logdir = logdir
        self.writers = {}

    def __iter__(self):
        return iter(self.bar)

    def __len__(self):
        return len(self.bar)

    def _writer(self, tag: str):
        if tag not in self.writers:
            import os

            from torch.utils.tensorboard import SummaryWriter

            self.writers[tag] = SummaryWriter(os.path.join(self.logdir, tag))
        return self.writers[tag]

    def _scalars(self, stats, tag, step):
        step = stats.get("num_updates", step)
        writer = self._writer(tag or "")
        for key, value in stats.items():
            if key != "num_updates" and isinstance(value, Number) and not isinstance(value, bool):
                writer.add_scalar(key, value, step)
        writer.flush()

    def log(self, stats, tag=None, step=None):
        self._scalars(stats, tag, step)
        self.bar.log(stats, tag, step)

    def print(self, stats, tag=None, step=None):
        self._scalars(stats, tag, step)
        self.bar.print(stats, tag, step)

    def close(self):
        for writer in self.writers.values():
            writer.close()
        self.bar.close()
