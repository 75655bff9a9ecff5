"""Checkpoints written by fairseq 0.12.2 (tests/fixtures/fairseq_0.12.2/checkpoints, made by the real fairseq;
see the README there): fairseq-lite's eval-lm and generate give fairseq's figures on them, a run can start
from their weights, and what cannot be done with them is a one-line error."""

import argparse
import re
from pathlib import Path

import pytest
import torch
from test_generate_cli import parse

from fairseq_lite.checkpoint import load_checkpoint_to_cpu, load_model_for_inference
from fairseq_lite.errors import CheckpointError, ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fairseq_0.12.2"
CHECKPOINTS = FIXTURES / "checkpoints"
LM = CHECKPOINTS / "transformer_lm.pt"
MT = CHECKPOINTS / "transformer_iwslt_de_en.pt"


def fairseq_state(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ["transformer_lm", "adaptive_lm"])
def test_eval_lm_gives_fairseqs_perplexity_on_a_fairseq_language_model(caplog, name):
    """transformer_lm: projected embeddings and output layer; adaptive_lm: adaptive input and a tied
    adaptive softmax (scored through the adaptive softmax, as fairseq does)."""
    from fairseq_cli.eval_lm import main as eval_lm

    caplog.set_level("INFO")
    result = eval_lm(
        [
            str(FIXTURES / "mono"),
            "--path",
            str(CHECKPOINTS / f"{name}.pt"),
            "--gen-subset",
            "valid",
            "--tokens-per-sample",
            "32",
            "--max-tokens",
            "256",
            "--num-workers",
            "0",
            "--cpu",
        ]
    )
    expected = (CHECKPOINTS / f"{name}.eval_lm_valid.txt").read_text().strip()
    loss, ppl = (float(x) for x in re.fullmatch(r"Loss \(base 2\): ([\d.]+), Perplexity: ([\d.]+)", expected).groups())
    assert result["loss"] == pytest.approx(loss, abs=6e-5)
    assert result["ppl"] == pytest.approx(ppl, abs=6e-3)
    assert any(r.getMessage() == expected for r in caplog.records)


def eval_lm_lines(caplog, *flags):
    from fairseq_cli.eval_lm import main as eval_lm

    caplog.set_level("INFO")
    caplog.clear()
    path = [] if "--path" in flags else ["--path", str(LM)]
    result = eval_lm(
        [str(FIXTURES / "mono"), *path, "--gen-subset", "valid", "--tokens-per-sample", "32"]
        + ["--max-tokens", "256", "--num-workers", "0", "--cpu", *flags]
    )
    return result, [r.getMessage() for r in caplog.records if r.name == "fairseq_cli.eval_lm"]


def test_eval_lm_word_probs_and_word_stats_are_fairseqs(caplog):
    """--output-word-probs (one line per sentence: `id word [logprob]...`) and --output-word-stats (word,
    count, summed log-probability, is_bpe, next word's summed log-probability, how many had one)."""
    _, ours = eval_lm_lines(caplog, "--output-word-probs", "--output-word-stats")
    theirs = (CHECKPOINTS / "transformer_lm.eval_lm_words.txt").read_text(encoding="utf-8").splitlines()
    split = theirs.index("Evaluated 632 tokens")
    their_probs, their_stats = theirs[:split], theirs[split + 1 : -1]

    def words(line):
        sample_id, rest = line.split(" ", 1)
        pairs = [re.fullmatch(r"(.*) \[(-?[\d.]+)\]", w).groups() for w in rest.split("\t")]
        return sample_id, [(w, float(p)) for w, p in pairs]

    our_probs = dict(words(line) for line in ours if re.match(r"\d+ ", line))
    assert len(our_probs) == len(their_probs) == 20
    for sample_id, pairs in map(words, their_probs):
        assert [w for w, _ in our_probs[sample_id]] == [w for w, _ in pairs]
        assert max(abs(a - b) for (_, a), (_, b) in zip(our_probs[sample_id], pairs)) <= 2e-6
    assert any(re.fullmatch(r"Evaluated 632 tokens in .*", line) for line in ours)
    stats = ours[ours.index(next(line for line in ours if line.startswith("Evaluated"))) + 1 :][: len(their_stats)]
    for mine, fairseqs in zip(stats, their_stats):
        a, b = mine.split("\t"), fairseqs.split("\t")
        assert (a[0], a[1], a[3], a[5]) == (b[0], b[1], b[3], b[5])  # word, count, is_bpe, with a next word
        assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-5)
        assert float(a[4]) == pytest.approx(float(b[4]), rel=1e-5)
    assert len(stats) == len(their_stats) and ours[-1] == theirs[-1]  # the Loss line


@pytest.mark.parametrize("name", ["transformer_lm", "adaptive_lm"])
def test_eval_lm_softmax_batch_gives_the_same_loss(caplog, name):
    """--softmax-batch 7 normalizes 7 tokens at a time (the fused kernel, or the adaptive softmax given
    each chunk's targets); fairseq's loss with it is its loss without."""
    path = str(CHECKPOINTS / f"{name}.pt")
    whole, _ = eval_lm_lines(caplog, "--path", path)
    batched, lines = eval_lm_lines(caplog, "--path", path, "--softmax-batch", "7")
    assert batched["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    assert lines[-1] == (CHECKPOINTS / f"{name}.eval_lm_valid.txt").read_text().strip()


def test_eval_lm_merges_bpe_pieces_into_words():
    """--post-process subword_nmt: a word's pieces count once, scored with their summed log-probability,
    as fairseq-eval-lm does; another --post-process is a one-line error."""
    from fairseq_lite.data.dictionary import Dictionary
    from fairseq_lite.errors import ConfigError
    from fairseq_lite.inference.eval_lm import SentenceScores

    d = Dictionary()
    ids = [d.add_symbol(w) for w in ("he@@", "l@@", "lo", "world")] + [d.eos()]
    scores = SentenceScores(d, "subword_nmt")
    scores.add(3, torch.tensor(ids), torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0]), word_probs=True, word_stats=True)
    assert scores.count == 3 and scores.logp_sum == -15.0
    stats = {w.word: w for w in scores.word_stats.values()}
    assert set(stats) == {"hello", "world", "</s>"} and stats["hello"].is_bpe and not stats["world"].is_bpe
    assert stats["hello"].log_prob == -6.0 and stats["hello"].next_word_prob == -4.0
    assert stats["</s>"].missing_next_words == 1
    with pytest.raises(ConfigError, match="merges subword_nmt"):
        SentenceScores(d, "sentencepiece")


def test_generate_gives_fairseqs_translations_on_a_fairseq_translation_model(capsys):
    from fairseq_cli.generate import main as generate

    generate(
        [
            str(FIXTURES / "joined"),
            "--path",
            str(MT),
            "--gen-subset",
            "valid",
            "--beam",
            "4",
            "--max-len-b",
            "12",
            "--batch-size",
            "16",
            "--num-workers",
            "0",
            "--cpu",
        ]
    )
    ours = {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}
    theirs = [
        line.split("\t")
        for line in (CHECKPOINTS / "transformer_iwslt_de_en.generate_valid.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert len(theirs) == 40 and len(ours) == 40
    for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
        assert ours[sample_id][2] == text
        assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_print_alignment_gives_fairseqs_alignments(capsys, mode):
    """--print-alignment hard|soft: the A- lines fairseq 0.12.2 prints for its own model."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(MT), "--gen-subset", "valid", "--beam", "4", "--max-len-b", "12"]
        + ["--batch-size", "16", "--num-workers", "0", "--cpu", "--print-alignment", mode]
    )
    ours = {values[0]: values[1] for kind, values in parse(capsys.readouterr().out) if kind == "A"}
    theirs = dict(
        line.split("\t", 1)
        for line in (CHECKPOINTS / f"transformer_iwslt_de_en.generate_valid.align_{mode}.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    assert len(theirs) == 40 and len(ours) == 40
    for tag, alignment in theirs.items():
        if mode == "hard":
            assert ours[tag[2:]] == alignment
        else:
            rows = [[float(p) for p in row.split(",")] for row in alignment.split()]
            our_rows = [[float(p) for p in row.split(",")] for row in ours[tag[2:]].split()]
            assert len(our_rows) == len(rows) and all(len(a) == len(b) for a, b in zip(our_rows, rows))
            assert max(abs(a - b) for r, q in zip(our_rows, rows) for a, b in zip(r, q)) <= 2e-6


def generate_lines(capsys, *flags):
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(MT), "--gen-subset", "valid", "--batch-size", "16"]
        + ["--num-workers", "0", "--cpu", *flags]
    )
    return capsys.readouterr().out.splitlines()


def test_score_reference_gives_fairseqs_scores(capsys):
    """--score-reference: each reference with fairseq's score (mean log-probability, base 2) and its
    per-token P- line."""
    ours = {line.split("\t")[0]: line.split("\t") for line in generate_lines(capsys, "--score-reference")}
    theirs = (CHECKPOINTS / "transformer_iwslt_de_en.score_reference_valid.txt").read_text(encoding="utf-8")
    theirs = [line.split("\t") for line in theirs.splitlines()]
    assert len(theirs) == 80
    for fields in theirs:
        mine = ours[fields[0]]
        if fields[0].startswith("H-"):
            assert mine[2] == fields[2] and float(mine[1]) == pytest.approx(float(fields[1]), abs=1e-4)
        else:
            assert [float(p) for p in mine[1].split()] == pytest.approx([float(p) for p in fields[1].split()], abs=2e-4)


def test_sacrebleu_flag_scores_with_sacrebleu(capsys):
    """--sacrebleu does what its help says: the BLEU line fairseq prints with --scoring sacrebleu."""
    expected = (CHECKPOINTS / "transformer_iwslt_de_en.generate_valid.sacrebleu.txt").read_text().strip()
    for flags in (["--sacrebleu"], ["--scoring", "sacrebleu"]):
        lines = generate_lines(capsys, "--beam", "4", "--max-len-b", "12", *flags)
        assert lines[-1] == expected


@pytest.mark.parametrize(
    "name,flags",
    [
        ("diverse_beam", ["--diverse-beam-groups", "2", "--diverse-beam-strength", "0.5"]),
        ("diverse_siblings", ["--diversity-rate", "0.5"]),
    ],
)
def test_diverse_searches_give_fairseqs_hypotheses(capsys, name, flags):
    """Diverse beam search (--diverse-beam-groups) and diverse siblings (--diversity-rate): fairseq's
    4-best lists, in fairseq's order, with its scores."""
    lines = generate_lines(capsys, "--beam", "4", "--nbest", "4", "--max-len-b", "12", *flags)
    ours = [line.split("\t") for line in lines if line.startswith("H-")]
    theirs = (CHECKPOINTS / f"transformer_iwslt_de_en.generate_valid.{name}.txt").read_text(encoding="utf-8")
    theirs = [line.split("\t") for line in theirs.splitlines()]
    assert len(theirs) == 160
    by_sentence = {}
    for tag, score, text in ours:
        by_sentence.setdefault(tag, []).append((text, float(score)))
    for tag in {t for t, _, _ in theirs}:
        expected = [(text, float(score)) for t, score, text in theirs if t == tag]
        assert [t for t, _ in by_sentence[tag]] == [t for t, _ in expected], tag
        assert [s for _, s in by_sentence[tag]] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_only_fairseqs_bookkeeping_is_dropped_from_the_weights():
    raw = fairseq_state(MT)["model"]
    converted = load_checkpoint_to_cpu(str(MT))
    dropped = sorted(set(raw) - set(converted["model"]))
    assert dropped == sorted(
        [
            "encoder.version",
            "decoder.version",
            "encoder.embed_positions._float_tensor",
            "decoder.embed_positions._float_tensor",
        ]
        + [
            f"encoder.layers.{i}.{p}_{w}"
            for i in range(2)
            for p in ("in_proj", "out_proj", "fc1", "fc2")
            for w in ("weight", "bias")
        ]
    )
    _, _, model = load_model_for_inference(str(MT), task_overrides={"data": str(FIXTURES / "joined")})
    assert set(model.state_dict()) == set(converted["model"])


def test_a_run_starts_from_fairseq_weights_but_does_not_resume_fairseqs_training_state(tmp_path):
    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import train

    model_values = [
        "decoder_layers=2",
        "decoder_embed_dim=16",
        "decoder_ffn_embed_dim=32",
        "decoder_attention_heads=2",
        "decoder_input_dim=24",
        "decoder_output_dim=24",
        "share_decoder_input_output_embed=true",
    ]
    overrides = [
        "task=language_modeling",
        f"task.data={FIXTURES / 'mono'}",
        "task.tokens_per_sample=32",
        "model=transformer_lm",
        *(f"model.{v}" for v in model_values),
        "optimizer=adam",
        "optimization.lr=[1e-12]",
        "optimization.max_update=1",
        "dataset.max_tokens=256",
        "dataset.num_workers=0",
        "common.log_format=none",
        f"checkpoint.save_dir={tmp_path}",
        f"checkpoint.finetune_from_model={LM}",
    ]
    train(compose_config(overrides))
    tuned = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))["model"]
    fairseq_weights = fairseq_state(LM)["model"]
    for name, value in tuned.items():
        torch.testing.assert_close(value, fairseq_weights[name], atol=1e-8, rtol=0)

    (tmp_path / "resume").mkdir()
    resume = [o for o in overrides if not o.startswith("checkpoint.")]
    with pytest.raises(
        CheckpointError,
        match="was written by fairseq: its optimizer and data-iterator states cannot "
        "be resumed; start a new run from its weights with "
        "checkpoint.finetune_from_model=",
    ):
        train(compose_config([*resume, f"checkpoint.save_dir={tmp_path / 'resume'}", f"checkpoint.restore_file={LM}"]))


@pytest.mark.parametrize(
    "group, option, value",
    [
        ("model", "character_embeddings", True),
        ("model", "decoder_layers_to_keep", "0"),
        ("task", "output_dictionary_size", 100),
    ],
)
def test_a_fairseq_option_fairseq_lite_lacks_is_a_one_line_error(tmp_path, group, option, value):
    state = fairseq_state(LM)
    state["cfg"][group][option] = value
    path = tmp_path / "unsupported.pt"
    torch.save(state, path)
    with pytest.raises(
        CheckpointError,
        match=rf"unsupported\.pt: the fairseq {group} uses {option}={value!r}, "
        rf"which fairseq-lite does not implement",
    ):
        load_checkpoint_to_cpu(str(path))


def test_training_components_fairseq_lite_lacks_are_left_out_for_inference(tmp_path):
    """cpu_adam and the bert BPE (fairseq's hf_bert_bpe): they shaped the training run, not the network;
    what fairseq-lite has (moses) is kept."""
    state = fairseq_state(MT)
    state["cfg"]["optimizer"] = {"_name": "cpu_adam", "fp16_adam_stats": False}
    state["cfg"]["lr_scheduler"] = {"_name": "reduce_lr_on_plateau"}
    state["cfg"]["bpe"] = {"_name": "bert"}
    state["cfg"]["tokenizer"] = {"_name": "moses"}
    path = tmp_path / "nag.pt"
    torch.save(state, path)
    cfg, _, model = load_model_for_inference(str(path), task_overrides={"data": str(FIXTURES / "joined")})
    assert cfg.model._name == "transformer" and cfg.optimizer is None and cfg.bpe is None
    assert cfg.tokenizer._name == "moses"
    _, _, reference = load_model_for_inference(str(MT), task_overrides={"data": str(FIXTURES / "joined")})
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_eval_lm_ensembles_average_the_models_probabilities(caplog):
    """--path a.pt:b.pt: two copies of a model score as that model; two different models score at most
    the mean of their losses (the log of averaged probabilities is at least the averaged logs)."""
    one, _ = eval_lm_lines(caplog)
    copies, _ = eval_lm_lines(caplog, "--path", f"{LM}:{LM}")
    assert copies["loss"] == pytest.approx(one["loss"], abs=1e-6)
    other, _ = eval_lm_lines(caplog, "--path", str(CHECKPOINTS / "adaptive_lm.pt"))
    both, _ = eval_lm_lines(caplog, "--path", f"{LM}:{CHECKPOINTS / 'adaptive_lm.pt'}")
    assert both["loss"] <= (one["loss"] + other["loss"]) / 2 and both["loss"] != one["loss"]


@pytest.mark.parametrize("mode", ["ordered", "unordered"])
def test_constrained_decoding_gives_fairseqs_translations(capsys, mode):
    """fairseq-interactive --constraints ordered|unordered (constraints after the input, tab-separated):
    fairseq's C- lines and its hypotheses, every one of which contains its constraints."""
    from fairseq_cli.interactive import main as interactive

    capsys.readouterr()
    interactive(
        [str(FIXTURES / "joined"), "--path", str(MT), "--beam", "5", "--nbest", "2", "--max-len-b", "16"]
        + ["--batch-size", "4", "--buffer-size", "12", "--cpu", "--constraints", mode]
        + ["--input", str(FIXTURES / "inputs" / "constraints.en")]
    )
    ours = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line[:2] in ("C-", "H-", "P-")]
    theirs = (CHECKPOINTS / f"transformer_iwslt_de_en.interactive_constraints_{mode}.txt").read_text(encoding="utf-8")
    theirs = [line.split("\t") for line in theirs.splitlines()]
    assert len(ours) == len(theirs) and sum(t[0].startswith("H-") for t in theirs) >= 12
    constraints: dict[str, list[str]] = {}
    for mine, fairseqs in zip(ours, theirs):
        assert mine[0] == fairseqs[0]
        if mine[0].startswith("C-"):
            assert mine == fairseqs
            constraints.setdefault(mine[0][2:], []).append(mine[1])
        elif mine[0].startswith("H-"):
            assert mine[2] == fairseqs[2] and float(mine[1]) == pytest.approx(float(fairseqs[1]), abs=1e-4)
            assert all(f" {c} " in f" {mine[2]} " for c in constraints[mine[0][2:]])
        else:
            assert [float(p) for p in mine[1].split()] == pytest.approx(
                [float(p) for p in fairseqs[1].split()], abs=2e-4
            )


def test_print_step_prints_each_hypothesis_decoding_steps(capsys):
    """--print-step: fairseq-generate's I- line after each hypothesis, the steps its search took (a token per
    step, eos included); a one-line error where there is no search (--score-reference) or no I- line (interactive)."""
    from fairseq_cli.generate import main as generate

    argv = [str(FIXTURES / "joined"), "--path", str(MT), "--gen-subset", "valid", "--beam", "2", "--max-len-b", "6"]
    generate(argv + ["--batch-size", "16", "--cpu", "--print-step"])
    lines = capsys.readouterr().out.splitlines()
    steps = {line.split("\t")[0][2:]: int(line.split("\t")[1]) for line in lines if line.startswith("I-")}
    hypos = {line.split("\t")[0][2:]: line.split("\t")[2] for line in lines if line.startswith("H-")}
    assert len(steps) == 40 and all(steps[i] == len(hypos[i].split()) + 1 for i in hypos)
    with pytest.raises(ConfigError, match="--print-step prints fairseq-generate's I- lines"):
        generate(argv + ["--score-reference", "--print-step"])
