"""fairseq-interactive's run: translate raw text from stdin (or --input), or continue it with a
language model, printing fairseq's S-/W-/H-/D-/P- lines as each buffer of lines is done."""

import fileinput
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch

from fairseq_lite.data.data_utils import collate_tokens
from fairseq_lite.errors import ConfigError
from fairseq_lite.generation.constraints import pack_constraints
from fairseq_lite.inference.loading import GenerationSetup
from fairseq_lite.inference.output import alignment_line, hypothesis_lines
from fairseq_lite.utils import move_to_device

logger = logging.getLogger("fairseq_cli.interactive")


def buffered_read(path: str, buffer_size: int) -> Iterator[list[str]]:
    """Lines in groups of `buffer_size`; from a pipe each group is yielded as soon as it is read."""
    buffer: list[str] = []
    with fileinput.input(files=[path], openhook=fileinput.hook_encoded("utf-8")) as lines:
        for line in lines:
            buffer.append(line.strip())
            if len(buffer) >= buffer_size:
                yield buffer
                buffer = []
    if buffer:
        yield buffer


def make_batches(lines: list[str], setup, batch_size: int | None, max_tokens: int | None) -> Iterator[dict[str, Any]]:
    """Encode lines into samples like the task's inference datasets, shortest first (less padding);
    each sample's "id" is the line's index in `lines`. With --constraints, a line's tab-separated fields
    after the first are its constraints (encoded like the input, in the target dictionary): the sample's
    "constraints" holds them packed, and "constraint_list" each line's."""
    task = setup.task
    src_dict = task.source_dictionary
    constrained = bool(setup.cfg.generation.constraints)
    line_constraints: list[list[torch.Tensor]] = [[] for _ in lines]
    if constrained:
        fields = [line.split("\t") for line in lines]
        lines = [f[0] for f in fields]
        line_constraints = [
            [
                task.target_dictionary.encode_line(setup.encode_fn(c), append_eos=False, add_if_not_exist=False).long()
                for c in f[1:]
            ]
            for f in fields
        ]
    has_encoder = setup.generator.model.has_encoder
    tokens = [src_dict.encode_line(setup.encode_fn(line), add_if_not_exist=False).long() for line in lines]
    if not has_encoder:
        # A language model continues the text: it starts after bos (eos unless --add-bos-token)
        # and the line's own eos is dropped so the text stays open.
        start = src_dict.bos() if getattr(task.cfg, "add_bos_token", False) else src_dict.eos()
        tokens = [torch.cat([t.new_tensor([start]), t[:-1]]) for t in tokens]
    # A translation task's own inference dataset collates the batch: its padding side, and what it adds
    # (a multilingual task's language tokens).
    dataset = task.build_dataset_for_inference(tokens, [len(t) for t in tokens]) if has_encoder else None
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    batch: list[int] = []
    for index in order + [None]:
        if index is not None:
            width = max([len(tokens[i]) for i in batch] + [len(tokens[index])])
            full = (batch_size is not None and len(batch) >= batch_size) or (
                max_tokens is not None and batch and width * (len(batch) + 1) > max_tokens
            )
            if not full:
                batch.append(index)
                continue
        if batch:
            if dataset is not None:
                sample = dataset.collater([dataset[i] for i in batch])
            else:
                src = collate_tokens([tokens[i] for i in batch], src_dict.pad(), src_dict.eos(), left_pad=False)
                sample = {
                    "id": torch.tensor(batch),
                    "net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(tokens[i]) for i in batch])},
                }
            if constrained:
                sample["constraint_list"] = [line_constraints[i] for i in sample["id"].tolist()]
                sample["constraints"] = pack_constraints(sample["constraint_list"])
            yield sample
        batch = [index] if index is not None else []


def interactive(setup: GenerationSetup, start_time: float | None = None) -> int:
    """Decode every line of cfg.interactive.input; returns how many lines were read."""
    start_time = time.perf_counter() if start_time is None else start_time
    cfg = setup.cfg
    buffer_size = max(1, cfg.interactive.buffer_size)
    batch_size, max_tokens = cfg.dataset.batch_size, cfg.dataset.max_tokens
    if batch_size is None and max_tokens is None:
        batch_size = 1
    if batch_size is not None and batch_size > buffer_size:
        raise ConfigError(f"--batch-size {batch_size} cannot be larger than --buffer-size {buffer_size}")

    tgt_dict = setup.task.target_dictionary
    src_dict = setup.task.source_dictionary
    post_process = cfg.common_eval.post_process
    strip = setup.generator.symbols_to_strip_from_output
    if cfg.generation.constraints:
        logger.warning("NOTE: Constrained decoding currently assumes a shared subword vocabulary.")
    if buffer_size > 1:
        logger.info(f"Sentence buffer size: {buffer_size}")
    logger.info("NOTE: hypothesis and token scores are output in base 2")
    logger.info("Type the input sentence and press return:")

    start_id, total_translate_time, count = 0, 0.0, 0
    for lines in buffered_read(cfg.interactive.input, buffer_size):
        results = []
        for sample in make_batches(lines, setup, batch_size, max_tokens):
            sample = move_to_device(sample, setup.device)
            began = time.perf_counter()
            hypos = setup.task.inference_step(
                setup.generator, setup.models, sample, constraints=sample.get("constraints")
            )
            elapsed = time.perf_counter() - began
            total_translate_time += elapsed
            for i, line_id in enumerate(sample["id"].tolist()):
                src = sample["net_input"]["src_tokens"][i]
                constraints = sample["constraint_list"][i] if "constraint_list" in sample else []
                results.append(
                    (start_id + line_id, src[src.ne(tgt_dict.pad())], hypos[i], elapsed / len(hypos), constraints)
                )

        for line_id, src_tokens, hypos, seconds, constraints in sorted(results, key=lambda r: r[0]):
            out = [f"S-{line_id}\t{src_dict.string(src_tokens, post_process)}", f"W-{line_id}\t{seconds:.3f}\tseconds"]
            out += [f"C-{line_id}\t{tgt_dict.string(c, post_process)}" for c in constraints]
            for hypo in hypos[: min(len(hypos), cfg.generation.nbest)]:
                out += hypothesis_lines(line_id, hypo, tgt_dict, post_process, strip, setup.decode_fn)[0]
                out += alignment_line(line_id, hypo, cfg.generation.print_alignment)
            print("\n".join(out), flush=True)
        start_id += len(lines)
        count += len(lines)

    logger.info(
        f"Total time: {time.perf_counter() - start_time:.3f} seconds; translation time: {total_translate_time:.3f}"
    )
    return count
