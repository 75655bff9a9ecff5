"""What fairseq-score prints: BLEU of system lines against reference lines, as fairseq scores them."""

import os
import sys
from collections.abc import Sequence

from fairseq_lite.errors import DataError
from fairseq_lite.scoring.bleu import BleuScorer


def score_files(
    sys_path: str,
    ref_path: str,
    order: int = 4,
    ignore_case: bool = False,
    sacrebleu: bool = False,
    sentence_bleu: bool = False,
) -> list[str]:
    """score_lines of the files fairseq-score names (`--sys -`: standard input), checked to pair up."""
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
    """Corpus BLEU over whitespace tokens (fairseq's "BLEU4 = ..." line), sacrebleu's corpus BLEU, or one
    "index BLEU" line per sentence with libbleu's +1 smoothing (one match and one count added for the 2- to
    4-grams, as its bleu_one_init does)."""
    if ignore_case:
        system = [line.lower() for line in system]
        references = [line.lower() for line in references]
    if sacrebleu:
        import sacrebleu as sb

        return [sb.corpus_bleu(list(system), [list(references)]).format()]
    scorer = BleuScorer()
    if sentence_bleu:
        out = []
        for i, (hyp, ref) in enumerate(zip(system, references)):
            scorer.reset()
            scorer.match[1:] = [1] * (BleuScorer.MAX_ORDER - 1)
            scorer.count[1:] = [1] * (BleuScorer.MAX_ORDER - 1)
            scorer.add_string(ref, hyp)
            out.append(f"{i} {scorer.result_string(order)}")
        return out
    for hyp, ref in zip(system, references):
        scorer.add_string(ref, hyp)
    return [scorer.result_string(order)]
