"""fairseq 0.12.2's translation READMEs, run as written: examples/{translation, scaling_nmt, backtranslation,
pay_less_attention_paper, stories, constrained_decoding, multilingual, joint_alignment_translation}/README.md,
read at run time from the PyPI package (tests/fairseq_readmes.py), their commands run through our installed
commands in one shell per README (tests/readme_runner.py), and every fairseq command must succeed.

What differs from the README (each test lists its own):
- data: the corpora the READMEs download are stood in for by short verses of the embedded KJV / Reina-Valera
  corpus, written where the README reads them (its language codes are labels: "de" and "fr" hold English or
  Spanish text). A downloaded model or test set is stood in for by one the README's own commands made.
- the training cap: every fairseq-train gets `--max-update 1 --max-epoch 1 --no-save-optimizer-state` appended,
  every fairseq-generate/-interactive `--max-len-a 0 --max-len-b 5`; models keep the README's architecture
  and size.
- `average_checkpoints.py --num-epoch-checkpoints 10` needs ten epochs: the capped run has one, so its
  checkpoint is linked as epochs 2-10 too (their average is that checkpoint) before the README averages them.
- without a GPU, `--fp16` and the launcher of 8 GPU processes (`python -m torch.distributed.launch
  --nproc_per_node 8`) are dropped.
- the lines fairseq_readmes.classify names are not run (downloads, pip, building fast_align or fairseq's CUDA
  kernels, scoring with test sets sacrebleu downloads); each test asserts which.
- README typos that fail in fairseq too are repaired where a test says so.
"""

import re
import shutil
from pathlib import Path

import pytest
from readme_runner import Scenario, run_readme

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "examples" / "translation" / "data" / "kjv_rv1909.en-es.subset.tsv"
TOKEN = re.compile(r"\w+|[^\w\s]")
SPLITS = {"train": (0, 48), "valid": (48, 56), "test": (56, 64)}

pytestmark = pytest.mark.readme


def verses(max_words: int = 12) -> list[tuple[str, str]]:
    pairs = []
    for line in TSV.read_text(encoding="utf-8").splitlines():
        en, es = (" ".join(TOKEN.findall(side.lower())) for side in line.split("\t"))
        if len(en.split()) <= max_words and len(es.split()) <= max_words:
            pairs.append((en, es))
    return pairs


PAIRS = verses()


def write_text(prefix: Path, src: str, tgt: str, lines: tuple[int, int] = SPLITS["train"]) -> None:
    """{prefix}.{src} (English) and {prefix}.{tgt} (Spanish): the stand-in of a downloaded parallel corpus."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    chunk = PAIRS[lines[0] : lines[1]]
    for side, lang in ((0, src), (1, tgt)):
        Path(f"{prefix}.{lang}").write_text("".join(p[side] + "\n" for p in chunk), encoding="utf-8")


def write_corpus(directory: Path, src: str, tgt: str, names: dict[str, str] | None = None) -> None:
    """train/valid/test (or the README's own names for them) of one language pair."""
    for split, lines in SPLITS.items():
        write_text(directory / (names or {}).get(split, split), src, tgt, lines)


def link_ten_epochs(checkpoint_dir: Path) -> None:
    """The capped run saved epoch 1 only: link it as epochs 2-10, for --num-epoch-checkpoints 10."""
    for epoch in range(2, 11):
        link = checkpoint_dir / f"checkpoint{epoch}.pt"
        if not link.exists():
            link.symlink_to("checkpoint1.pt")


def assert_ran(run, expected: dict[str, int]) -> None:
    """Every fairseq command the README's shell ran exited 0, and as many of each ran as the README has."""
    failed = [i for i in run.invocations if i["rc"] != 0]
    assert not failed, failed
    counts = {name: len(run.ran(name)) for name in expected}
    assert counts == expected, counts


def not_run(run) -> list[str]:
    return [step.why_not.split(":")[0] for step in run.steps if not step.run]


def test_translation_readme(tmp_path):
    """examples/translation/README.md: the pre-trained fconv's generate + fairseq-score, IWSLT'14 de-en transformer
    (with --eval-bleu during training, moses detok), WMT'17 en-de and WMT'14 en-fr fconv, the multilingual
    transformer (multilingual_translation, interactive)."""
    text = "examples/translation"
    write_corpus(tmp_path / text / "iwslt14.tokenized.de-en", "de", "en")
    write_corpus(tmp_path / text / "wmt17_en_de", "en", "de")
    write_corpus(tmp_path / text / "wmt14_en_fr", "en", "fr")
    bpe16k = tmp_path / text / "iwslt17.de_fr.en.bpe16k"
    for src in ("de", "fr"):
        write_text(bpe16k / f"train.bpe.{src}-en", src, "en")
        for k in range(6):
            write_text(bpe16k / f"valid{k}.bpe.{src}-en", src, "en", SPLITS["valid"])
    # what the README's `sacrebleu --echo src | spm_encode.py` (not run: downloads) writes for fairseq-interactive
    (tmp_path / "iwslt17.test.de-en.de.bpe").write_text("".join(p[0] + "\n" for p in PAIRS[56:64]), encoding="utf-8")

    def pretrained_stand_in(workspace: Path) -> None:
        # the downloaded fconv-py model and its newstest2014: the README's own WMT'14 en-fr model and test split
        shutil.copytree(workspace / "data-bin" / "wmt14_en_fr", workspace / "data-bin" / "wmt14.en-fr.newstest2014")
        (workspace / "data-bin" / "wmt14.en-fr.fconv-py").mkdir()
        shutil.copy(
            workspace / "checkpoints" / "fconv_wmt_en_fr" / "checkpoint_best.pt",
            workspace / "data-bin" / "wmt14.en-fr.fconv-py" / "model.pt",
        )

    scenario = Scenario(
        "translation",
        replace={
            "/tmp/gen.out": "gen.out",  # a path of the scratch directory, not the machine's /tmp
            # typo, fails in fairseq too: the preprocess wrote data-bin/wmt14_en_fr
            "fairseq-generate data-bin/fconv_wmt_en_fr ": "fairseq-generate data-bin/wmt14_en_fr ",
        },
        before={"data-bin/wmt14.en-fr.fconv-py/model.pt": pretrained_stand_in},
        block_order=[0, 2, 3, 4, 5, 6, 1, 7],  # the download block reads the en-fr model: after it is trained
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(
        run,
        {
            "fairseq-preprocess": 5,
            "fairseq-train": 4,
            "fairseq-generate": 4,
            "fairseq-interactive": 1,
            "fairseq-score": 1,
        },
    )
    assert set(not_run(run)) == {"pip", "curl", "cd", "bash", "sacrebleu"}
    assert re.search(r"BLEU4 = \d", run.output)  # fairseq-score's line
    assert (tmp_path / "iwslt17.test.de-en.en.sys").read_text().count("\nH-") + 1 >= 8
    for split in ("valid", "valid1", "valid5"):  # --validpref a,b,...: valid, valid1, ...
        assert (tmp_path / "data-bin" / "iwslt17.de_fr.en.bpe16k" / f"{split}.fr-en.fr.bin").exists()
