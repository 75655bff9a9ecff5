"""What fairseq-score prints: BLEU of system lines against reference lines, as fairseq scores them."""

import os
import sys
from collections.abc import Sequence
from typing import Any

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.scoring.bleu import BleuConfig, BleuScorer


def score_files(
    sys_path: str,
    ref_path: str,
    order: int = 4,
    ignore_case: bool = False,
    sacrebleu: bool = False,
    sentence_bleu: bool = False,
) -> list[str]:
    """score_lines of the files fairseq-score names (`--sys -`: standard input), checked to pair up."""
    if ref_path == "-":
        raise ConfigError("--ref - is invalid: the references are read from a file (--sys may be - for stdin)")
    for name, path in (("--sys", sys_path), ("--ref", ref_path)):
        if path != "-" and not os.path.isfile(path):
            raise DataError(f"{name} {path}: no such file")
    with open(ref_path, encoding="utf-8") as ref:
        references = ref.readlines()
    if sys_path == "-":
        system = sys.stdin.readlines()
    else:
        with open(sys_path, encoding="utf-8") as hyp:
            system = hyp.readlines()
    if len(system) != len(references):
        raise DataError(f"--sys has {len(system)} lines and --ref {len(references)}: they must pair up line by line")
    return score_lines(system, references, order, ignore_case, sacrebleu, sentence_bleu)


def score_lines(
    system: Sequence[str],
    references: Sequence[str],
    order: int = 4,
    ignore_case: bool = False,
    sacrebleu: bool = False,
    sentence_bleu: bool = False,
) -> list[str]:
    """Corpus BLEU as fairseq's fairseq-score computes it (each line encoded into one growing dictionary, eos
    appended: an `<unk>` in a reference never matches, an empty line counts its eos, a trailing `</s>` is
    trimmed), sacrebleu's corpus BLEU, or one "index BLEU" line per sentence with libbleu's +1 smoothing (one
    match and one count added for the 2- to 4-grams, as its bleu_one_init does). `ignore_case` lowercases for
    fairseq's BLEU only, as fairseq does."""
    if not 1 <= order <= BleuScorer.MAX_ORDER:
        raise ConfigError(f"--order {order} is invalid: BLEU is computed for n-gram orders 1 to {BleuScorer.MAX_ORDER}")
    if sacrebleu:
        import sacrebleu as sb

        return [sb.corpus_bleu(list(system), [list(references)]).format()]
    if ignore_case:
        system = [line.lower() for line in system]
        references = [line.lower() for line in references]
    words = Dictionary()
    scorer = BleuScorer(BleuConfig(pad=words.pad(), eos=words.eos(), unk=words.unk()))

    def ids(line: str) -> Any:
        return words.encode_line(line, add_if_not_exist=True)

    if sentence_bleu:
        out = []
        for i, (hyp, ref) in enumerate(zip(system, references)):
            scorer.reset()
            scorer.match[1:] = [1] * (BleuScorer.MAX_ORDER - 1)
            scorer.count[1:] = [1] * (BleuScorer.MAX_ORDER - 1)
            scorer.add(ids(ref), ids(hyp))
            out.append(f"{i} {scorer.result_string(order)}")
        return out
    for hyp, ref in zip(system, references):
        scorer.add(ids(ref), ids(hyp))
    return [scorer.result_string(order)]
