"""fairseq's joint alignment and translation (examples/joint_alignment_translation): `--arch transformer_align`
(parameter counts equal fairseq 0.12.2's, the supervised attention, the full-context pass, incremental decoding),
fairseq-preprocess --align-suffix (byte-identical to fairseq's), --load-alignments batches (equal to fairseq's
LanguagePairDataset's), label_smoothed_cross_entropy_with_alignment (fairseq's loss on its own checkpoints),
fairseq-generate --print-alignment (fairseq's H- and A- lines) and a fairseq-train run.

The fixtures under tests/fixtures/fairseq_0.12.2 (align/, align_expected/, checkpoints/transformer_align*) were
made with the real fairseq: see "### Joint alignment and translation" in its README."""

import shlex

import pytest
import torch
from omegaconf import OmegaConf
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse
from test_lstm import fairseq_train, train_logs
from test_preprocess import data_files, summary_lines
from test_transformer import LONG, SHORT, TINY, Task, left_pad, make_dict

from fairseq_cli import preprocess
from fairseq_lite.checkpoint import load_checkpoint_to_cpu, load_model_for_inference
from fairseq_lite.criterions.label_smoothed_cross_entropy_with_alignment import (
    LabelSmoothedCrossEntropyCriterionWithAlignment,
    LabelSmoothedCrossEntropyCriterionWithAlignmentConfig,
)
from fairseq_lite.data.alignments import parse_alignment
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.models.transformer_align import TransformerAlignConfig, TransformerAlignModel
from fairseq_lite.options.compose import compose_config
from fairseq_lite.registry import CRITERION_REGISTRY, TASK_REGISTRY, get_architecture

ALIGN = FIXTURES / "align"
EXPECTED = FIXTURES / "align_expected"
SRC, LENGTHS = left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)])
PREV = torch.LongTensor([[2, 4, 9, 13, 25, 6], [2, 7, 7, 20, 3, 31]])
PREPROCESS = "-s en -t es --joined-dictionary --trainpref inputs/bi.train --validpref inputs/bi.valid"
PREPROCESS += " --align-suffix align"


def align_cfg(arch: str = "transformer_align", **values):
    values = get_architecture(arch).values(values)
    values.setdefault("max_source_positions", 1024)
    values.setdefault("max_target_positions", 1024)
    return OmegaConf.merge(OmegaConf.structured(TransformerAlignConfig), values)


def build(task=None, seed: int = 0, **values):
    torch.manual_seed(seed)
    cfg = align_cfg(**{**TINY, "alignment_layer": 0, **values})
    return TransformerAlignModel.build_model(cfg, task or Task(make_dict(40))).eval()


# ---------------------------------------------------------------- the model

# fairseq 0.12.2's parameter counts for a 10,000-symbol dictionary, measured with fairseq itself
# (/tmp/fairseq-ref/bin/python): args = argparse.Namespace(max_source_positions=1024, max_target_positions=1024,
# **values), ARCH_CONFIG_REGISTRY[arch](args), ARCH_MODEL_REGISTRY[arch].build_model(args, task), summing the
# parameters but for the encoder layers' BetterTransformer copies (see tests/test_transformer.py).
FAIRSEQ_PARAMS = [
    ("transformer_align", {}, 59498496),
    ("transformer_align", {"share_all_embeddings": True}, 49258496),
    ("transformer_wmt_en_de_big_align", {}, 207077376),
    ("transformer_wmt_en_de_big_align", {"share_all_embeddings": True}, 186597376),
]


@pytest.mark.parametrize("arch,values,expected", FAIRSEQ_PARAMS)
def test_architecture_parameter_counts_match_fairseq(arch, values, expected):
    with torch.device("meta"):
        model = TransformerAlignModel.build_model(align_cfg(arch, **values), Task(make_dict(10000)))
    assert model.num_parameters() == expected
    assert (model.alignment_layer, model.alignment_heads, model.full_context_alignment) == (4, 1, False)


def test_forward_gives_the_supervised_layers_attention():
    model = build(alignment_layer=0, alignment_heads=1)
    with torch.no_grad():
        logits, extra = model(SRC, LENGTHS, PREV)
        encoder_out = model.encoder(SRC, src_lengths=LENGTHS)
        plain_logits, plain = model.decoder(PREV, encoder_out)
        layer0 = model.decoder(PREV, encoder_out, alignment_layer=0, alignment_heads=1)[1]["attn"][0]
        last = model.decoder(PREV, encoder_out, alignment_layer=1)[1]["attn"][0]
    torch.testing.assert_close(logits, plain_logits)
    attn = extra["attn"][0]
    assert attn.shape == (2, 6, 8) and plain["attn"] == [None]  # the plain decoder forms none unless asked
    torch.testing.assert_close(attn, layer0)
    assert not torch.allclose(attn, last, atol=1e-3)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 6))
    assert attn[1, :, :3].abs().max() == 0  # the left padding of the short source


def test_full_context_alignment_is_a_second_pass_without_the_causal_mask():
    model = build(alignment_layer=1, alignment_heads=2, full_context_alignment=True)
    with torch.no_grad():
        logits, extra = model(SRC, LENGTHS, PREV)
        encoder_out = model.encoder(SRC, src_lengths=LENGTHS)
        causal_logits, causal = model.decoder(PREV, encoder_out, alignment_layer=1, alignment_heads=2)
        _, full = model.decoder(
            PREV, encoder_out, features_only=True, alignment_layer=1, alignment_heads=2, full_context_alignment=True
        )
    torch.testing.assert_close(logits, causal_logits, atol=1e-6, rtol=0)  # translation stays causal
    torch.testing.assert_close(extra["attn"][0], full["attn"][0])
    # The first position sees the whole target now, so its attention differs; with the causal mask it would not.
    assert not torch.allclose(extra["attn"][0][:, 0], causal["attn"][0][:, 0], atol=1e-4)


@pytest.mark.parametrize("full_context", [False, True])
def test_incremental_forward_decoder_equals_the_full_pass(full_context):
    model = build(full_context_alignment=full_context)
    with torch.no_grad():
        full, _ = model(SRC, LENGTHS, PREV)
        encoder_out = model.encoder(SRC, src_lengths=LENGTHS)
        state = {}
        steps = [
            model.forward_decoder(PREV[:, :t], encoder_out, incremental_state=state) for t in range(1, PREV.size(1) + 1)
        ]
    assert all(logits.shape == (2, 1, 40) and extra["attn"][0].shape == (2, 1, 8) for logits, extra in steps)
    torch.testing.assert_close(torch.cat([logits for logits, _ in steps], dim=1), full, atol=1e-5, rtol=0)


def test_state_dict_names_are_the_transformers():
    from test_transformer import tiny_model

    assert sorted(build().state_dict()) == sorted(tiny_model().state_dict())


def test_model_config_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"alignment_layer must be a decoder layer, 0 to 1 .* got 4"):
        build(alignment_layer=4)
    with pytest.raises(ConfigError, match=r"alignment_heads must be 1 to 2 .* got 3"):
        build(alignment_heads=3)
    with pytest.raises(ConfigError, match=r"alignment_heads must be 1 to 2 .* got 0"):
        build(alignment_heads=0)


# ---------------------------------------------------------------- fairseq-preprocess --align-suffix


@pytest.fixture
def in_fixtures(monkeypatch):
    monkeypatch.chdir(FIXTURES)  # fairseq ran with paths relative to it; they appear in the log


@pytest.mark.parametrize("workers", [1, 2])
def test_preprocess_align_suffix_is_byte_identical_to_fairseq(tmp_path, in_fixtures, workers):
    preprocess.main(PREPROCESS.split() + ["--destdir", str(tmp_path), "--workers", str(workers)])
    assert data_files(tmp_path) == data_files(ALIGN)
    assert {"train.align.en-es.bin", "valid.align.en-es.idx"} <= set(data_files(ALIGN))
    for name in data_files(ALIGN):
        assert (tmp_path / name).read_bytes() == (ALIGN / name).read_bytes(), name
    assert summary_lines(tmp_path / "preprocess.log") == summary_lines(ALIGN / "preprocess.log")


def test_binarized_alignments_read_back():
    align = MMapIndexedDataset(str(ALIGN / "train.align.en-es"))
    lines = (FIXTURES / "inputs" / "bi.train.align").read_text(encoding="utf-8").splitlines()
    assert len(align) == len(lines) == 200 and align.dtype == "uint32"
    for i in (0, 3, 6, 10):  # 6: an empty line
        assert align[i].tolist() == parse_alignment(lines[i]).tolist()
    assert align[6].numel() == 0
    assert parse_alignment(" 0-1  2-0 ").tolist() == [0, 1, 2, 0] and parse_alignment("").dtype == torch.int32


def test_preprocess_alignment_errors(tmp_path):
    text = tmp_path / "text"
    text.mkdir()
    for lang in ("en", "es"):
        (text / f"train.{lang}").write_text("a b c\nd e\n", encoding="utf-8")
    (text / "train.align").write_text("0-0 1-1\n0-0 1:1\n", encoding="utf-8")
    flags = ["-s", "en", "-t", "es", "--trainpref", str(text / "train"), "--destdir"]
    with pytest.raises(DataError, match=r"train.align:2: '1:1' is not a SRC-TGT pair"):
        preprocess.main([*flags, str(tmp_path / "a"), "--align-suffix", "align"])
    assert not list((tmp_path / "a").glob("*.align.*"))
    with pytest.raises(DataError, match=r"--align-suffix aln: no alignment file found \(looked for .*train.aln\)"):
        preprocess.main([*flags, str(tmp_path / "b"), "--align-suffix", "aln"])
    with pytest.raises(ConfigError, match="language pair"):
        preprocess.main(["--only-source", "--trainpref", str(text / "train.en"), "--align-suffix", "align"])


# ---------------------------------------------------------------- --load-alignments batches


def task_for(data, *extra):
    cfg = compose_config(
        ["task=translation", f"task.data={data}", "task.load_alignments=true", "model=transformer_align"]
        + ["criterion=label_smoothed_cross_entropy_with_alignment", "dataset.max_tokens=400", *extra]
    )
    return cfg, TASK_REGISTRY.build(cfg.task)


def per_sentence(batch: dict) -> dict:
    """Each sentence's rows and its alignment pairs (source column, target column, weight), by id: fairseq sorts
    a batch's rows with an unstable sort, so sentences of equal source length may come in another order."""
    width = batch["target"].size(1)
    pairs = {int(i): [] for i in batch["id"]}
    for (s, t), w in zip(batch.get("alignments", torch.zeros(0, 2)).tolist(), batch.get("align_weights", []).tolist()):
        pairs[int(batch["id"][t // width])].append((s, t % width, w))
    fields = ("src_tokens", "src_lengths", "prev_output_tokens", "target")
    return {
        int(i): ([batch[f][row].tolist() for f in fields], pairs[int(i)]) for row, i in enumerate(batch["id"].tolist())
    }


def test_batches_carry_fairseqs_alignments():
    """fairseq's LanguagePairDataset collated the same sentences (align_expected/batches.pt): among them empty
    alignments (no loss) and ones pointing at an eos (skipped), with each padding side."""
    expected = torch.load(EXPECTED / "batches.pt", weights_only=True)
    datasets = {}
    for key, want in sorted(expected.items()):
        pads = (want["left_pad_source"], want["left_pad_target"])
        if pads not in datasets:
            _, task = task_for(ALIGN, f"task.left_pad_source={pads[0]}", f"task.left_pad_target={pads[1]}")
            task.load_dataset("valid")
            datasets[pads] = task.datasets["valid"]
        dataset = datasets[pads]
        batch = dataset.collater([dataset[i] for i in want["indices"]])
        got = {"id": batch["id"], "ntokens": batch["ntokens"], "target": batch["target"], **batch["net_input"]}
        got.update({k: batch[k] for k in ("alignments", "align_weights") if k in batch})
        assert sorted(got) == sorted(k for k in want if k not in ("indices", "left_pad_source", "left_pad_target"))
        assert got["ntokens"] == want["ntokens"]
        for name in ("alignments", "align_weights", "src_tokens"):
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, (key, name)
        assert per_sentence(got) == per_sentence(want), key
        if torch.equal(got["id"], want["id"]):  # the same order: the same tensors
            assert all(torch.equal(got[k], want[k]) for k in got if torch.is_tensor(got[k])), key
    assert any(0 < w < 1 for want in expected.values() for w in want["align_weights"].tolist())


def test_load_alignments_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in ALIGN.iterdir():
        if ".align." not in f.name:
            (data / f.name).write_bytes(f.read_bytes())
    from fairseq_lite.training.checks import check_training_config

    cfg, task = task_for(data, "optimizer=adam")
    with pytest.raises(DataError, match=r"load_alignments: no alignments train.align.en-es.bin/.idx"):
        check_training_config(cfg, resume=False)
    task.load_dataset("valid")  # a split without alignments has none, as in fairseq
    assert "alignments" not in task.datasets["valid"].collater([task.datasets["valid"][0]])


# ---------------------------------------------------------------- the criterion

CHECKPOINT_NAMES = ["transformer_align", "transformer_align_full_context"]
GROUPS = {"first": list(range(8)), "middle": list(range(8, 20)), "rest": list(range(20, 40))}


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_criterion_gives_fairseqs_losses_on_its_checkpoints(name):
    expected = OmegaConf.to_container(OmegaConf.load(EXPECTED / "criterion.json"))
    cfg, task, model = load_model_for_inference(str(CHECKPOINTS / f"{name}.pt"), task_overrides={"data": str(ALIGN)})
    assert model.full_context_alignment == name.endswith("full_context") and model.alignment_layer == 0
    criterion = CRITERION_REGISTRY.build(cfg.criterion, task)  # the checkpoint's: label smoothing 0.1, lambda 0.05
    assert isinstance(criterion, LabelSmoothedCrossEntropyCriterionWithAlignment)
    task.load_dataset("valid")
    dataset = task.datasets["valid"]
    model.eval()
    for group, indices in GROUPS.items():
        want = expected[f"{name}/{group}"]
        with torch.no_grad():
            loss, sample_size, log = criterion(model, dataset.collater([dataset[i] for i in indices]))
        assert sample_size == want["sample_size"]
        assert float(loss) == pytest.approx(want["total_loss"], rel=2e-6)
        for field in ("loss", "nll_loss", "alignment_loss"):
            assert float(log[field]) == pytest.approx(want[field], rel=2e-6), field


def test_criterion_config_errors():
    class FakeTask:
        target_dictionary = make_dict(40)

        def __init__(self, load_alignments):
            self.cfg = OmegaConf.create({"load_alignments": load_alignments})

    def cfg(**values):
        node = OmegaConf.structured(LabelSmoothedCrossEntropyCriterionWithAlignmentConfig)
        node.sentence_avg = False
        return OmegaConf.merge(node, values)

    criterion = LabelSmoothedCrossEntropyCriterionWithAlignment.build_criterion(cfg(), FakeTask(True))
    assert criterion.alignment_lambda == 0.05
    with pytest.raises(ConfigError, match="needs alignments: set task.load_alignments"):
        LabelSmoothedCrossEntropyCriterionWithAlignment.build_criterion(cfg(), FakeTask(False))
    with pytest.raises(ConfigError, match="ignore_prefix_size is not used"):
        LabelSmoothedCrossEntropyCriterionWithAlignment.build_criterion(cfg(ignore_prefix_size=1), FakeTask(True))
    with pytest.raises(ConfigError, match="--arch transformer_align"):
        LabelSmoothedCrossEntropyCriterionWithAlignment.check_model_config(cfg(), OmegaConf.create({"_name": "x"}))


# ---------------------------------------------------------------- fairseq-generate --print-alignment


def generate_valid(capsys, name, *flags):
    from fairseq_cli.generate import main as generate

    generate(
        [str(ALIGN), "--path", str(CHECKPOINTS / f"{name}.pt"), "--gen-subset", "valid", "--beam", "4"]
        + ["--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu", *flags]
    )
    return parse(capsys.readouterr().out)


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_generate_prints_fairseqs_hypotheses_and_alignments(capsys, name):
    """Without full_context_alignment fairseq prints the search's own attention (the last layer's, all heads: not
    the supervised layer 0); with it, the model's second pass at layer 0. Both are what fairseq printed."""
    lines = generate_valid(capsys, name, "--print-alignment")  # bare, as the README gives it: hard
    ours = {(kind, values[0]): values for kind, values in lines if kind in ("H", "A")}
    theirs = [line.split("\t") for line in (CHECKPOINTS / f"{name}.generate_valid.txt").read_text("utf-8").splitlines()]
    assert len(theirs) == 80 and len(ours) == 80
    assert len({h[2] for h in theirs if h[0].startswith("H")}) > 30  # a model that reads its source
    for tag, *values in theirs:
        kind, sample_id = tag.split("-", 1)
        if kind == "H":
            assert ours["H", sample_id][2] == values[1]
            assert float(ours["H", sample_id][1]) == pytest.approx(float(values[0]), abs=1e-4)
        else:
            assert ours["A", sample_id][1] == values[0], sample_id


def test_generate_prints_fairseqs_soft_alignments(capsys):
    lines = generate_valid(capsys, "transformer_align", "--print-alignment", "soft")
    ours = {values[0]: values[1] for kind, values in lines if kind == "A"}
    theirs = dict(
        line.split("\t", 1)
        for line in (CHECKPOINTS / "transformer_align.generate_valid.align_soft.txt").read_text("utf-8").splitlines()
    )
    assert len(theirs) == 40 and len(ours) == 40
    for tag, alignment in theirs.items():
        rows = [[float(p) for p in row.split(",")] for row in alignment.split()]
        our_rows = [[float(p) for p in row.split(",")] for row in ours[tag[2:]].split()]
        assert [len(r) for r in our_rows] == [len(r) for r in rows]
        assert max(abs(a - b) for r, q in zip(our_rows, rows) for a, b in zip(r, q)) <= 2e-6


def test_score_reference_aligns_with_the_supervised_layer(capsys):
    """--score-reference scores through the model's forward, so its A- lines come from the supervised layer 0
    (fairseq's SequenceScorer, hard alignments), unlike a search's."""
    lines = generate_valid(capsys, "transformer_align", "--score-reference", "--print-alignment", "hard")
    ours = {values[0]: values[1] for kind, values in lines if kind == "A"}
    theirs = dict(
        line.split("\t", 1)
        for line in (CHECKPOINTS / "transformer_align.score_reference_valid.align.txt").read_text("utf-8").splitlines()
    )
    assert len(theirs) == 40 and {f"A-{k}": v for k, v in ours.items()} == theirs


# ---------------------------------------------------------------- fairseq-train


# examples/joint_alignment_translation/README.md, step 4, as it is.
README_TRAIN = """fairseq-train \\
    binarized \\
    --arch transformer_wmt_en_de_big_align --share-all-embeddings \\
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --activation-fn relu\\
    --lr 0.0002 --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07 \\
    --dropout 0.3 --attention-dropout 0.1 --weight-decay 0.0 \\
    --max-tokens 3500 --label-smoothing 0.1 \\
    --save-dir ./checkpoints --log-interval 1000 --max-update 60000 \\
    --keep-interval-updates -1 --save-interval-updates 0 \\
    --load-alignments --criterion label_smoothed_cross_entropy_with_alignment \\
    --fp16"""


def test_fairseq_train_with_alignments_from_the_readme(tmp_path, caplog):
    """The README's recipe: alignments binarized with --align-suffix (diagonal ones, made here), then its
    fairseq-train command, with the model made tiny, capped and sped up by flags appended after its own (and
    on a machine without a GPU, without --fp16). alignment_loss is logged and falls."""
    text = tmp_path / "text"
    text.mkdir()
    inputs = FIXTURES / "inputs"
    for split in ("train", "valid"):
        sides = [(inputs / f"bi.{split}.{lang}").read_text("utf-8").splitlines()[:120] for lang in ("en", "es")]
        for lang, lines in zip(("en", "es"), sides):
            (text / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        diagonal = [
            " ".join(f"{i}-{i}" for i in range(min(len(s.split()), len(t.split())))) + "\n" for s, t in zip(*sides)
        ]
        (text / f"{split}.align").write_text("".join(diagonal), encoding="utf-8")
    data = tmp_path / "binarized"
    preprocess.main(
        ["--source-lang", "en", "--target-lang", "es", "--trainpref", str(text / "train"), "--validpref"]
        + [str(text / "valid"), "--align-suffix", "align", "--destdir", str(data), "--joined-dictionary"]
    )
    argv = shlex.split(README_TRAIN.replace("\\\n", " "))[1:]
    argv = [str(data) if a == "binarized" else str(tmp_path / "ck") if a == "./checkpoints" else a for a in argv]
    if not torch.cuda.is_available():
        argv.remove("--fp16")
    tiny = "--encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 16 --decoder-embed-dim 16"
    tiny += " --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 --encoder-attention-heads 2"
    tiny += " --decoder-attention-heads 2 --alignment-layer 1 --full-context-alignment --alignment-lambda 0.5"
    tiny += " --dropout 0 --attention-dropout 0 --lr 0.01 --warmup-updates 4 --max-tokens 400 --max-update 12"
    losses = fairseq_train(caplog, *argv, *tiny.split())
    logs = train_logs(caplog)
    inner = [line for line in logs if "num_updates" in line and "alignment_loss" in line and "loss" in line]
    assert len(losses) >= 12 and losses[-1] < losses[0]
    assert float(inner[-1]["alignment_loss"]) < float(inner[0]["alignment_loss"])
    assert any("valid_alignment_loss" in line for line in logs)
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    assert state["num_updates"] == 12 and state["cfg"]["model"]["_name"] == "transformer_align"
    assert state["cfg"]["model"]["full_context_alignment"] and state["cfg"]["task"]["load_alignments"]
    assert state["cfg"]["criterion"]["alignment_lambda"] == 0.5
