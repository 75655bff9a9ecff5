"""fairseq 0.12.2's translation READMEs, run as written: examples/{translation, scaling_nmt, backtranslation,
pay_less_attention_paper, stories, constrained_decoding, multilingual, joint_alignment_translation}/README.md,
read at run time from the PyPI package (tests/fairseq_readmes.py), their commands run through our installed
commands in one shell per README (tests/readme_runner.py), and every fairseq command must succeed.

What differs from the README (each test lists its own):
- data: the corpora the READMEs download are stood in for by short verses of the embedded KJV / Reina-Valera
  corpus, written where the README reads them (its language codes are labels: "de" and "fr" hold English or
  Spanish text). A downloaded model or test set is stood in for by one the README's own commands made.
- the training cap: every fairseq-train gets `--max-update 1 --max-epoch 1 --no-save-optimizer-state` appended,
  every fairseq-generate/-interactive `--max-len-a 0 --max-len-b 5` (not constrained_decoding's: its
  constraints need more); models keep the README's architecture and size.
- `average_checkpoints.py --num-epoch-checkpoints 10` needs ten epochs: the capped run has one, so its
  checkpoint is linked as epochs 2-10 too (their average is that checkpoint) before the README averages them.
- without a GPU, `--fp16` and the launcher of 8 GPU processes (`python -m torch.distributed.launch
  --nproc_per_node 8`) are dropped.
- the lines fairseq_readmes.classify names are not run (downloads, pip, building fast_align or fairseq's CUDA
  kernels, scoring with test sets sacrebleu downloads); each test asserts which.
- README typos that fail in fairseq too are repaired where a test says so.
"""

import io
import re
import shutil
from pathlib import Path

import pytest
from readme_runner import Scenario, install_example_script, readme_lines, run_readme
from test_cli import command
from test_cli import run as run_command

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


def preprocess(workspace: Path, *args: str) -> None:
    """Our fairseq-preprocess, for a data directory a README expects ready-made (another README makes it)."""
    run_command([command("fairseq-preprocess"), *args], cwd=workspace, timeout=600)


def test_scaling_nmt_readme(tmp_path):
    """examples/scaling_nmt/README.md: transformer_vaswani_wmt_en_de_big on a joined 32k dictionary, the average of
    its last ten epochs, and generation from it."""
    write_corpus(
        tmp_path / "wmt16_en_de_bpe32k",
        "en",
        "de",
        {
            "train": "train.tok.clean.bpe.32000",
            "valid": "newstest2013.tok.bpe.32000",
            "test": "newstest2014.tok.bpe.32000",
        },
    )
    scenario = Scenario(
        "scaling_nmt",
        replace={
            # typo, fails in fairseq too: the script is scripts/average_checkpoints.py
            "python scripts/average_checkpoints ": "python scripts/average_checkpoints.py ",
            "/path/to/checkpoints": "checkpoints",  # where the README's fairseq-train saved (its default)
        },
        before={"average_checkpoints.py": lambda ws: link_ten_epochs(ws / "checkpoints")},
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-preprocess": 1, "fairseq-train": 1, "fairseq-generate": 1})
    assert set(not_run(run)) == {"tar", "bash"}
    assert (tmp_path / "checkpoint.avg10.pt").exists() and (tmp_path / "gen.out").read_text().count("\nH-") >= 7


def test_backtranslation_readme(tmp_path):
    """examples/backtranslation/README.md: en-de and de-en transformer_wmt_en_de_big, back-translation of
    monolingual German shards by sampling, fairseq's extract_bt_data.py, and training on parallel + BT data
    (train + train1, --upsample-primary 16). The monolingual data stands in with 2 shards, not 25."""
    write_corpus(tmp_path / "examples/backtranslation/wmt18_en_de", "en", "de")
    (tmp_path / "examples/backtranslation/wmt18_en_de/code").write_text("#version: 0.2\n")  # the BPE codes
    short = [p for p in PAIRS if 4 <= len(p[0].split()) <= 5]  # back-translations of <= 5 tokens pass --ratio 1.5
    for shard in range(2):
        mono = tmp_path / f"examples/backtranslation/wmt18_de_mono/bpe.monolingual.dedup.{shard:02d}.de"
        mono.parent.mkdir(parents=True, exist_ok=True)
        mono.write_text("".join(p[0] + "\n" for p in short[shard * 6 : shard * 6 + 6]), encoding="utf-8")
    install_example_script(tmp_path, "backtranslation/extract_bt_data.py")

    def ten_epochs(workspace: Path) -> None:
        for directory in workspace.glob("checkpoints_*"):
            link_ten_epochs(directory)

    scenario = Scenario(
        "backtranslation",
        replace={'$(seq -f "%02g" 0 24)': '$(seq -f "%02g" 0 1)'},  # 2 monolingual shards stand in for 25
        before={"average_checkpoints.py": ten_epochs},
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-preprocess": 4, "fairseq-train": 3, "fairseq-generate": 2})
    assert set(not_run(run)) == {"pip", "cd", "bash"}
    bt = (tmp_path / "backtranslation_output" / "bt_data.en").read_text().splitlines()
    assert len(bt) > 0
    combined = tmp_path / "data-bin" / "wmt18_en_de_para_plus_bt"
    assert (combined / "train1.en-de.en.bin").is_symlink()
    final = run.ran("fairseq-train")[-1]["argv"]
    assert "--upsample-primary 16" in final
    assert (tmp_path / "checkpoints_en_de_parallel_plus_bt" / "checkpoint.avg10.pt").exists()


def test_pay_less_attention_readme(tmp_path):
    """examples/pay_less_attention_paper/README.md: lightconv_iwslt_de_en (10-epoch average, generate --quiet),
    lightconv_wmt_en_de_big and lightconv_wmt_en_fr_big (dynamic convolutions, GLU) on joined dictionaries. Its
    data directories are the ones examples/translation prepares: our fairseq-preprocess makes them."""
    text = tmp_path / "text"
    write_corpus(text / "de-en", "de", "en")
    write_corpus(text / "en-de", "en", "de")
    write_corpus(text / "en-fr", "en", "fr")
    splits = lambda d: ["--trainpref", str(d / "train"), "--validpref", str(d / "valid"), "--testpref", str(d / "test")]  # noqa: E731
    preprocess(
        tmp_path, "-s", "de", "-t", "en", *splits(text / "de-en"), "--destdir", "data-bin/iwslt14.tokenized.de-en"
    )
    for pair, name, test_set in (
        ("en-de", "wmt16_en_de_bpe32k", "wmt16.en-de.joined-dict.newstest2014"),
        ("en-fr", "wmt14_en_fr", "wmt14.en-fr.joined-dict.newstest2014"),
    ):
        src, tgt = pair.split("-")
        preprocess(
            tmp_path, "-s", src, "-t", tgt, "--joined-dictionary", *splits(text / pair), "--destdir", f"data-bin/{name}"
        )
        shutil.copytree(tmp_path / "data-bin" / name, tmp_path / "data-bin" / test_set)  # the downloaded test set
    scenario = Scenario(
        "pay_less_attention_paper",
        before={"average_checkpoints.py": lambda ws: link_ten_epochs(ws / "save" / "dynamic_conv_iwslt")},
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-train": 3, "fairseq-generate": 3})
    assert set(not_run(run)) == {"cd", "python cuda_function_gen.py", "python setup.py", "pip", "bash"}
    archs = [i["argv"] for i in run.ran("fairseq-train")]
    assert "-a lightconv_iwslt_de_en" in archs[0] and "--arch lightconv_wmt_en_de_big" in archs[1]
    assert (tmp_path / "wmt16_gen.txt").read_text().count("\nH-") >= 7


def test_stories_readme(tmp_path):
    """examples/stories/README.md: fconv_self_att_wp (gated multi-head self-attention), the fusion model its
    comment describes (the same command with --pretrained True --pretrained-checkpoint), and sampling from
    the fusion model with --model-overrides naming where the pretrained model now is."""
    write_corpus(tmp_path / "examples/stories/writingPrompts", "wp_source", "wp_target")
    train = next(line for _, line in readme_lines(Scenario("stories")) if "fairseq-train" in line)
    fusion = f"{train} --pretrained True --pretrained-checkpoint checkpoints/checkpoint_best.pt --save-dir fusion"
    scenario = Scenario(
        "stories",
        replace={
            "/path/to/trained/model/checkpoint_best.pt": "fusion/checkpoint_best.pt",
            "/path/to/pretrained/model/checkpoint": "checkpoints/checkpoint_best.pt",
        },
        extra_lines={"-a fconv_self_att_wp": [fusion]},  # "Train a fusion model: add the arguments ..."
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-preprocess": 1, "fairseq-train": 2, "fairseq-generate": 1})
    assert set(not_run(run)) == {"cd", "curl"}
    assert "--model-overrides" in run.ran("fairseq-generate")[0]["argv"]
    assert run.output.count("\nH-") >= 8


def test_constrained_decoding_readme(tmp_path):
    """examples/constrained_decoding/README.md: its sentence through fairseq's own normalize.py and tok.py (from the
    package) into fairseq-interactive --bpe fastbpe --constraints. The downloaded de-en model stands in as a small
    transformer trained here on BPE'd verses, with fastBPE codes learned from them."""
    from subword_nmt.learn_bpe import learn_bpe

    from fairseq_lite.data.encoders.subword_nmt_bpe import FastBPE, FastBPEConfig

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    text = tmp_path / "text"
    write_corpus(text, "de", "en")
    words = io.StringIO()
    learn_bpe(io.StringIO((text / "train.de").read_text() + (text / "train.en").read_text()), words, 200)
    merges = [line for line in words.getvalue().splitlines() if line and not line.startswith("#")]
    (model_dir / "bpecodes").write_text("".join(f"{m} 1\n" for m in merges))  # fastBPE's "a b count"
    bpe = FastBPE(FastBPEConfig(bpe_codes=str(model_dir / "bpecodes")))
    for path in text.iterdir():
        path.write_text("".join(bpe.encode(line) + "\n" for line in path.read_text().splitlines()))
    preprocess(
        tmp_path, "-s", "de", "-t", "en", "--joined-dictionary", "--trainpref", "text/train", "--destdir", "model"
    )
    train = [
        command("fairseq-train"),
        "model",
        "--arch",
        "transformer",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
    ]
    train += ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32"]
    train += ["--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    train += ["--max-tokens", "500", "--max-update", "2", "--save-dir", "model", "--disable-validation"]
    run_command(train, cwd=tmp_path, timeout=600)
    (model_dir / "checkpoint_last.pt").rename(model_dir / "model1.pt")
    for script in ("normalize.py", "tok.py"):
        install_example_script(tmp_path, f"constrained_decoding/{script}", on_path=True)
    # no generation cap: its constraints need more than 5 tokens, and the stand-in model is small
    scenario = Scenario("constrained_decoding", replace={"/path/to/model": "model"}, generate_cap=[])
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-interactive": 1})
    lines = run.output.splitlines()
    # C- lines are the constraints in BPE units, as fairseq prints them (tgt_dict.string without --remove-bpe)
    constraints = [line.split("\t", 1)[1].replace("@@ ", "") for line in lines if line.startswith("C-0")]
    assert constraints == ["hard", "toinfluence"]
    assert any(line.startswith("H-0") for line in lines)


def test_multilingual_readme(tmp_path):
    """examples/multilingual/README.md: translation_multi_simple_epoch with temperature sampling and language
    tokens, fine-tuning from that model, generation in one direction (and mBART-50's generation command), and
    its scoring with sacrebleu on the output. Its placeholders name a 2-pair model (en-es,es-en)."""
    write_corpus(tmp_path / "text", "en", "es")
    preprocess(tmp_path, "-s", "en", "-t", "es", "--joined-dictionary", "--trainpref", "text/train", "--validpref",
               "text/valid", "--testpref", "text/test", "--destdir", "data-bin")  # fmt: skip
    (tmp_path / "langs.txt").write_text("en\nes\n")

    def pretrained(workspace: Path) -> None:
        (workspace / "checkpoints").rename(workspace / "pretrained")  # the first run's model, to fine-tune from

    placeholders = {
        '<language pairs to be trained, e.g. "en-cs,cs-en">': "en-es,es-en",
        "<set to data path>": "data-bin",
        "<a file which contains a list of languages separated by new lines>": "langs.txt",
        "<path to the pretrained model, e.g. mbart or another trained multilingual model>": (
            "pretrained/checkpoint_last.pt"
        ),
        "<multilingual model>": "checkpoints/checkpoint_last.pt",
        "<source language>": "en",
        "<target language>": "es",
        "<path to a customized tokenizer for decoding evaluation>": "cat",
        '<"$TOKENIZER $target_lang" or cat for sacrebleu>': "cat",
        "<path to your binarized data with fairseq dictionaries>": "data-bin",
        "<path_to_extracted_folder>/model.pt": "checkpoints/checkpoint_last.pt",
        "<path_to_extracted_folder>/ML50_langs.txt": "langs.txt",
        "cat {source_lang}_": "cat ${source_lang}_",  # typo, fails in fairseq too: ${source_lang} lacks its $
    }
    scenario = Scenario(
        "multilingual",
        replace=placeholders,
        # typo, fails in fairseq too: the generate commands' line break after --target-lang lacks its backslash
        block_replace={"--target-lang $target_lang\n": "--target-lang $target_lang \\\n"},
        before={"--finetune-from-model": pretrained},
    )
    run = run_readme(scenario, tmp_path)
    assert_ran(run, {"fairseq-train": 2, "fairseq-generate": 2})
    assert not not_run(run)
    out = (tmp_path / "en_es.txt").read_text()
    assert out.count("\nH-") >= 7 and "sacrebleu" in run.ran("fairseq-generate")[0]["argv"]
    assert (tmp_path / "en_es.hyp").read_text().count("\n") == out.count("\nH-") + out.startswith("H-")
    assert "BLEU" in run.output  # sacrebleu's score of en_es.hyp


def test_joint_alignment_translation_readme(tmp_path):
    """examples/joint_alignment_translation/README.md: fairseq-preprocess --align-suffix,
    transformer_wmt_en_de_big_align trained with --load-alignments and label_smoothed_cross_entropy_with_alignment,
    generate --print-alignment. fast_align's output stands in as monotone alignments (word i to word i)."""
    write_corpus(tmp_path / "bpe.32k", "en", "de")
    en = (tmp_path / "bpe.32k" / "train.en").read_text().splitlines()
    de = (tmp_path / "bpe.32k" / "train.de").read_text().splitlines()
    align = ["".join(f"{i}-{i} " for i in range(min(len(a.split()), len(b.split())))).strip() for a, b in zip(en, de)]
    (tmp_path / "bpe.32k" / "train.align").write_text("\n".join(align) + "\n")
    run = run_readme(Scenario("joint_alignment_translation"), tmp_path)
    assert_ran(run, {"fairseq-preprocess": 1, "fairseq-train": 1, "fairseq-generate": 1})
    assert set(not_run(run)) == {
        "./prepare-wmt18en2de_no_norm_no_escape_no_agressive.sh",
        "git",
        "pushd",
        "cd",
        "cmake",
        "make",
        "popd",
        "$ALIGN",
    }
    assert (tmp_path / "binarized" / "train.align.en-de.bin").exists()
    assert sum(line.startswith("A-") for line in run.output.splitlines()) >= 7
