"""fairseq's `translation_multi_simple_epoch`: the language tokens in the dictionary and in the batches, the
sampled mixture of language pairs, epoch by epoch, equal to fairseq 0.12.2's on the same data and flags
(multi/batches.pt, see the fixtures' README); temperature sampling's proportions; fairseq-train and
fairseq-generate with examples/multilingual/README.md's flags, a resumed run making the uninterrupted
run's updates, and fairseq's own hypotheses from a checkpoint it trained."""

import copy
import functools
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.multilingual import (
    SampledMultiDataset,
    SampledMultiEpochDataset,
    augment_dictionary,
    get_lang_tok,
)
from fairseq_lite.data.multilingual.sampling_method import temperature_sampling
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.options.compose import compose_config
from fairseq_lite.registry import TASK_REGISTRY

MULTI = FIXTURES / "multi"
LANGS = FIXTURES / "inputs" / "multi_langs.txt"  # es, fr, en: the order fixes the tokens' ids
TASK_FLAGS = ["--task", "translation_multi_simple_epoch", "--lang-dict", str(LANGS), "--lang-pairs", "en-es,es-en"]
# The flags multi_simple_epoch_batches.py gave fairseq, setting by setting (and --max-tokens 400).
SETTINGS = {
    "temperature": ["--sampling-method", "temperature", "--sampling-temperature", "1.5", "--encoder-langtok", "src"]
    + ["--decoder-langtok", "--seed", "3"],
    "replacing": ["--sampling-method", "uniform", "--encoder-langtok", "tgt", "--decoder-langtok"]
    + ["--lang-tok-replacing-bos-eos", "--seed", "5"],
    "virtual": ["--sampling-method", "temperature", "--sampling-temperature", "2", "--encoder-langtok", "src"]
    + ["--decoder-langtok", "--virtual-epoch-size", "100", "--virtual-data-size", "250", "--seed", "7"],
    "mbart": ["--lang-tok-style", "mbart", "--langtoks-specs", "main,dae", "--encoder-langtok", "src"]
    + ["--left-pad-source", "False", "--truncate-source", "--max-source-positions", "12", "--seed", "1"],
    "mined": ["--extra-data", json.dumps({"mined": str(MULTI)}), "--extra-lang-pairs", '{"mined": "es-en"}']
    + ["--langtoks", '{"main": ("src", "tgt"), "mined": ("src.mined", "tgt")}', "--langtoks-specs", "main,mined"]
    + ["--sampling-weights", '{"main:en-es": 0.5, "main:es-en": 0.2, "mined:es-en": 0.3}', "--seed", "9"],
}
# A tiny transformer with the README's model flags (its widths cut down, dropout off).
TINY = ["--arch", "transformer", "--encoder-normalize-before", "--decoder-normalize-before", "--layernorm-embedding"]
TINY += ["--share-all-embeddings", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16"]
TINY += ["--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32"]
TINY += ["--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--dropout", "0"]
README_TRAINING = ["--sampling-method", "temperature", "--sampling-temperature", "1.5", "--encoder-langtok", "src"]
README_TRAINING += ["--decoder-langtok", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.2"]
README_TRAINING += ["--optimizer", "adam", "--adam-eps", "1e-06", "--adam-betas", "(0.9, 0.98)"]
README_TRAINING += ["--lr-scheduler", "inverse_sqrt", "--lr", "0.005", "--warmup-updates", "10"]


@pytest.fixture(scope="module")
def fairseq_batches():
    return torch.load(MULTI / "batches.pt", weights_only=True)


@functools.cache
def _composed(flags, data):
    from fairseq_cli.train import legacy_overrides

    return compose_config(legacy_overrides([str(data), *TASK_FLAGS, "--arch", "transformer", *flags]))


def train_cfg(*flags, data=MULTI):
    """The config fairseq-train composes from these flags (composed once per flag list)."""
    return copy.deepcopy(_composed(tuple(flags), str(data)))


def build_task(*flags, data=MULTI):
    return TASK_REGISTRY.build(train_cfg(*flags, data=data).task)


def epoch_batches(task, epoch, max_tokens=400):
    """The training batches of `epoch` as fairseq-train makes them: a fresh iterator for the epoch."""
    task.load_dataset("train", epoch=epoch, combine=True)
    dataset = task.dataset("train")
    itr = task.get_batch_iterator(
        dataset,
        max_tokens=max_tokens,
        max_positions=(1024, 1024),
        ignore_invalid_inputs=True,
        seed=task.args.seed,
        epoch=epoch,
    )
    return dataset, list(itr.next_epoch_itr(shuffle=True))


def rows(batch):
    """A batch's sentences as (id, source row, target row, prev_output_tokens row), padding included."""
    net_input = batch.get("net_input", batch)
    tensors = [net_input["src_tokens"], batch["target"], net_input["prev_output_tokens"]]
    ids = batch["id"] if isinstance(batch["id"], list) else batch["id"].tolist()
    return sorted((i, *(tuple(t[r].tolist()) for t in tensors)) for r, i in enumerate(ids))


def assert_batch_equal(ours, theirs):
    """The same sentences with the same tokens, padded to the same widths on the same side, rows by
    descending source length; rows of equal length may come in another order (fairseq sorts them with
    torch's unstable sort)."""
    assert ours["net_input"]["src_lengths"].tolist() == theirs["src_lengths"]
    assert ours["ntokens"] == theirs["ntokens"]
    assert rows(ours) == rows(theirs)


# --- dictionaries -------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["temperature", "mbart"])
def test_the_augmented_dictionary_is_fairseqs(fairseq_batches, setting):
    """Every language of --lang-dict gets its token at the end, in the file's order, spec by spec; mBART's
    style adds <mask>: the same symbols at the same ids as fairseq's, so its embeddings line up."""
    task = build_task(*SETTINGS[setting])
    assert task.source_dictionary.symbols == fairseq_batches[setting]["symbols"]
    assert task.target_dictionary is task.source_dictionary or task.target_dictionary == task.source_dictionary
    for name, theirs in fairseq_batches.items():
        assert len(build_task(*SETTINGS[name]).source_dictionary) == theirs["dictionary_size"], name


def test_lang_tok_spelling_and_order():
    assert get_lang_tok("en", "multilingual") == "__en__"
    assert get_lang_tok("en_XX", "mbart") == "[en_XX]"
    assert get_lang_tok("en", "multilingual", "src.dae") == "__en_dae__"
    assert get_lang_tok("de", "mbart", "mined") == "[de_mined]"
    d = Dictionary()
    d.add_symbol("hello")
    augment_dictionary(d, ["ru_RU", "en_XX"], "mbart", ["main", "dae"])
    assert d.symbols[5:] == ["[ru_RU]", "[en_XX]", "[ru_RU_dae]", "[en_XX_dae]", "<mask>"]
    with pytest.raises(ConfigError, match="lang_tok_style='klingon'"):
        get_lang_tok("en", "klingon")


def test_language_lists_and_dictionary_sources(tmp_path):
    """--langs instead of --lang-dict (its order is the tokens' order), --lang-pairs from a file (fairseq's
    FileContentsAction), one --fixed-dictionary for every language, or --source-dict/--target-dict."""
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("en-es,es-en\n")
    task = build_task("--lang-dict", "", "--langs", "en,fr,es", "--lang-pairs", str(pairs))
    assert task.lang_pairs == ["en-es", "es-en"]
    assert task.source_dictionary.symbols[-3:] == ["__en__", "__fr__", "__es__"]
    fixed = build_task("--fixed-dictionary", str(MULTI / "dict.en.txt"))
    assert fixed.dicts["en"] is fixed.dicts["es"] and len(fixed.source_dictionary) == 2019
    sides = build_task("--source-dict", str(MULTI / "dict.en.txt"), "--target-dict", str(MULTI / "dict.es.txt"))
    assert set(sides.dicts) == {"src", "tgt"} and sides.target_dictionary.symbols[-1] == "__en__"
    # without a language list the pairs' languages, sorted
    inferred = build_task("--lang-dict", "")
    assert inferred.langs == ["en", "es"] and inferred.source_dictionary.symbols[-2:] == ["__en__", "__es__"]


# --- training data --------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_training_batches_are_fairseqs_epoch_after_epoch(fairseq_batches, setting):
    """The same pairs drawn, ordered, batched and collated (language tokens in the source, and in target
    and prev_output_tokens) as fairseq's iterator gives them, in each of several epochs."""
    task = build_task(*SETTINGS[setting])
    for epoch, theirs in enumerate(fairseq_batches[setting]["epochs"], start=1):
        dataset, batches = epoch_batches(task, epoch)
        assert len(dataset) == theirs["len"]
        assert [sorted(b["id"].tolist()) for b in batches] == [sorted(ids) for ids in theirs["ids"]]
        for ours, full in zip(batches, theirs["full"]):
            assert_batch_equal(ours, full)


@pytest.mark.parametrize("setting", ["temperature", "replacing", "mbart"])
def test_validation_batches_are_fairseqs(fairseq_batches, setting):
    """Validation reads every pair's data once (fairseq's concatenation)."""
    task = build_task(*SETTINGS[setting])
    task.load_dataset("valid")
    itr = task.get_batch_iterator(
        task.dataset("valid"), max_tokens=400, max_positions=(1024, 1024), seed=task.args.seed
    )
    batches = list(itr.next_epoch_itr(shuffle=False))
    assert len(batches) == len(fairseq_batches[setting]["valid"])
    for ours, theirs in zip(batches, fairseq_batches[setting]["valid"]):
        assert_batch_equal(ours, theirs)


def test_language_tokens_in_a_batch():
    """--encoder-langtok src: the source's language token first; --decoder-langtok: the target starts with
    the target language's token, which the decoder predicts after eos (prev_output_tokens = eos, token, ...)."""
    task = build_task(*SETTINGS["temperature"])
    d = task.source_dictionary
    _, batches = epoch_batches(task, 1)
    for batch in batches[:5]:
        src, tgt, prev = batch["net_input"]["src_tokens"], batch["target"], batch["net_input"]["prev_output_tokens"]
        first = [row[row.ne(d.pad())][0].item() for row in src]
        for src_tok, tgt_tok in zip(first, tgt[:, 0].tolist()):
            assert (d[src_tok], d[tgt_tok]) in (("__en__", "__es__"), ("__es__", "__en__"))
        assert prev[:, 0].eq(d.eos()).all() and torch.equal(prev[:, 1], tgt[:, 0])


def fake_dataset(n):
    class Fake:
        sizes = np.stack([np.arange(n) % 7 + 1, np.arange(n) % 5 + 1], axis=1)

        def __len__(self):
            return n

        def __getitem__(self, i):
            return i

    return Fake()


def test_temperature_sampling_draws_pairs_by_size_to_the_power_one_over_t():
    sizes = [4000, 400, 40]
    for temp in (1.0, 1.5, 5.0):
        ratios = temperature_sampling(sizes, temp)
        expected = np.array(ratios) / sum(ratios)
        assert expected == pytest.approx(np.array(sizes) ** (1 / temp) / sum(s ** (1 / temp) for s in sizes))
        dataset = SampledMultiDataset([fake_dataset(s) for s in sizes], sampling_ratios=ratios, virtual_size=200_000)
        drawn = Counter(dataset[i][0] for i in np.random.default_rng(0).integers(0, len(dataset), 20_000))
        assert [drawn[k] / 20_000 for k in range(3)] == pytest.approx(expected, abs=0.01)
        assert dataset.virtual_size_per_dataset.tolist() == pytest.approx(expected * 200_000, abs=2)
    # fairseq's epoch size: every pair scaled to the largest by its ratio, at most 1.5 times the data
    ratios = temperature_sampling(sizes, 1.5)
    dataset = SampledMultiDataset([fake_dataset(s) for s in sizes], sampling_ratios=ratios)
    assert len(dataset) == int(min(sum(r / ratios[0] * 4000 for r in ratios), 1.5 * sum(sizes)))
    # within a pair, items are drawn uniformly: without replacement up to its size, with it beyond
    starts = [0, *dataset.cumulated_sizes[:-1]]
    for k, size in enumerate(sizes):
        drawn = dataset._cur_indices[starts[k] : dataset.cumulated_sizes[k]]
        assert drawn.min() >= 0 and drawn.max() < size
        assert (len(set(drawn.tolist())) == len(drawn)) == (len(drawn) <= size)


def test_each_epochs_draw_depends_on_the_epoch_alone():
    """What makes a resumed run exact: epoch 3's items are the same whether epochs 1 and 2 came before."""
    args = dict(sampling_ratios=[0.7, 0.3], virtual_size=500)
    walked = SampledMultiDataset([fake_dataset(300), fake_dataset(60)], **args)
    for epoch in (2, 3):
        walked.set_epoch(epoch)
    direct = SampledMultiDataset([fake_dataset(300), fake_dataset(60)], epoch=3, **args)
    assert np.array_equal(walked._cur_indices, direct._cur_indices)
    assert not np.array_equal(
        walked._cur_indices, SampledMultiDataset([fake_dataset(300), fake_dataset(60)], **args)._cur_indices
    )
    # virtual epochs: epoch 5 (slice 2 of 3 of the second draw) straight away, or after epochs 1-4
    epochs = dict(sampling_ratios=[0.7, 0.3], virtual_size=500, virtual_epoch_size=200)
    walked = SampledMultiEpochDataset([fake_dataset(300), fake_dataset(60)], **epochs)
    for epoch in range(2, 6):
        walked.set_epoch(epoch)
    direct = SampledMultiEpochDataset([fake_dataset(300), fake_dataset(60)], epoch=5, **epochs)
    assert len(walked) == len(direct) == 200
    assert [walked[i] for i in range(200)] == [direct[i] for i in range(200)]


def test_resuming_mid_epoch_continues_with_the_same_batches():
    task = build_task(*SETTINGS["temperature"])
    _, full = epoch_batches(task, 2)
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=400, max_positions=(1024, 1024), seed=3, epoch=2)
    epoch = itr.next_epoch_itr(shuffle=True)
    for _ in range(4):
        next(epoch)
    state = itr.state_dict()
    again = build_task(*SETTINGS["temperature"])
    again.load_dataset("train", epoch=2, combine=True)
    resumed = again.get_batch_iterator(
        again.dataset("train"), max_tokens=400, max_positions=(1024, 1024), seed=3, epoch=2
    )
    resumed.load_state_dict(state)
    rest = list(resumed.next_epoch_itr(shuffle=True))
    assert [b["id"].tolist() for b in rest] == [b["id"].tolist() for b in full[4:]]
    assert all(torch.equal(a["net_input"]["src_tokens"], b["net_input"]["src_tokens"]) for a, b in zip(rest, full[4:]))


def test_concat_and_round_robin_read_every_pair_once():
    for method in ("concat", "RoundRobin"):
        task = build_task("--sampling-method", method, "--encoder-langtok", "src", "--decoder-langtok")
        dataset, batches = epoch_batches(task, 1)
        assert len(dataset) == 280 and sorted(i for b in batches for i in b["id"].tolist()) == sorted(
            list(range(200)) + list(range(80))
        )


def test_shards_and_reversed_directions_sharing_files(tmp_path):
    """train, train1, ... in a directory are combined, the first upsampled; --enable-reservsed-directions-
    shared-datasets reads en-es once for both directions and yields the same items."""
    data = tmp_path / "data"
    shutil.copytree(MULTI, data, ignore=shutil.ignore_patterns("batches.pt"))
    for lang in ("en", "es"):
        for ext in ("bin", "idx"):
            shutil.copy(data / f"valid.en-es.{lang}.{ext}", data / f"train1.en-es.{lang}.{ext}")
    task = build_task("--upsample-primary", "2", data=data)
    task.load_dataset("train", combine=True)
    # es-en reads train.es-en and then, as fairseq looks for each shard in either direction, train1.en-es
    assert [len(d) for d in task.dataset("train").datasets] == [2 * 200 + 40, 2 * 80 + 40]
    plain = build_task("--encoder-langtok", "src", "--decoder-langtok", "--lang-pairs", "en-es,es-en")
    shared = build_task(
        "--encoder-langtok",
        "src",
        "--decoder-langtok",
        "--enable-reservsed-directions-shared-datasets",
        "--lang-pairs",
        "en-es,es-en",
    )
    for task in (plain, shared):
        task.load_dataset("train", combine=True)
    a, b = plain.dataset("train"), shared.dataset("train")
    assert all(torch.equal(a[i][1]["source"], b[i][1]["source"]) for i in range(0, len(a), 7))


def test_enable_lang_ids_puts_the_languages_ids_in_each_row():
    task = build_task(*SETTINGS["temperature"], "--enable-lang-ids")
    _, batches = epoch_batches(task, 1)
    d = task.source_dictionary
    ids = {"es": 1, "fr": 2, "en": 3}  # the language list's order, after <unk>
    for batch in batches[:3]:
        src = batch["net_input"]["src_tokens"]
        langs = [d[row[row.ne(d.pad())][0].item()].strip("_") for row in src]
        assert batch["net_input"]["src_lang_id"].squeeze(1).tolist() == [ids[lang] for lang in langs]
        assert batch["tgt_lang_id"].squeeze(1).tolist() == [ids["es" if lang == "en" else "en"] for lang in langs]
    with pytest.raises(ConfigError, match="enable_lang_ids.*TransformerModel.forward does not take"):
        task.build_model(train_cfg(*SETTINGS["temperature"], *TINY, "--enable-lang-ids").model)


# --- inference ----------------------------------------------------------------------------------
def test_inference_dataset_prefix_and_stripped_token():
    task = build_task("--encoder-langtok", "src", "--decoder-langtok", "-s", "en", "-t", "es")
    d = task.source_dictionary
    assert task.lang_pairs == ["en-es"] and not task.training
    tokens = [torch.LongTensor([10, 11, d.eos()]), torch.LongTensor([12, d.eos()])]
    dataset = task.build_dataset_for_inference(tokens, [3, 2])
    batch = dataset.collater([dataset[0], dataset[1]])
    assert batch["net_input"]["src_tokens"].tolist() == [[d.index("__en__"), 10, 11, 2], [1, d.index("__en__"), 12, 2]]

    class Generator:
        search = None

        def generate(self, models, sample, **kwargs):
            self.kwargs = kwargs
            return []

    gen = Generator()
    task.inference_step(gen, [], batch)
    assert gen.kwargs["prefix_tokens"].tolist() == [[d.index("__es__")]] * 2
    assert "bos_token" not in gen.kwargs
    replacing = build_task(
        "--encoder-langtok", "src", "--decoder-langtok", "--lang-tok-replacing-bos-eos", "-s", "en", "-t", "es"
    )
    dataset = replacing.build_dataset_for_inference(tokens, [3, 2])
    batch = dataset.collater([dataset[0], dataset[1]])
    assert batch["net_input"]["src_tokens"].tolist() == [[10, 11, d.index("__en__")], [1, 12, d.index("__en__")]]
    replacing.inference_step(gen, [], batch)
    assert gen.kwargs["bos_token"] == d.index("__es__") and gen.kwargs["prefix_tokens"] is None


def test_config_errors_are_one_line(tmp_path):
    cases = [
        (["--load-alignments"], "load_alignments is not supported"),
        (["--langs", "en,es"], "task.langs and task.lang_dict can not both be specified"),
        (["--left-pad-source", "maybe"], "left_pad_source='maybe' is invalid"),
        (["--langtoks", "{'main': 'src'}"], "langtoks: the entry of 'main' must be a"),
        (["--extra-data", '{"mono_dae": "x"}', "--extra-lang-pairs", '{"mono_dae": "en-en"}'], "monolingual data"),
        (["--extra-lang-pairs", '{"mined": "en-es"}'], "'mined' has no data"),
        (["--lang-tok-replacing-bos-eos", "--left-pad-target", "True"], "which needs task.left_pad_target=false"),
        (["--virtual-epoch-size", "0"], "virtual_epoch_size=0 is invalid"),
        (["--lang-pairs", "en-de"], "en-de contain languages that are not in the language dictionary"),
        (["--sampling-weights", '{"main:en-es": 1}'], "has no weight for main:es-en"),
        (["--lang-pairs", "en-es,es-fr"], "no dictionary at .*dict.fr.txt"),
    ]
    for flags, message in cases:
        with pytest.raises((ConfigError, DataError), match=message):
            task = build_task(*flags)
            task.load_dataset("train", combine=True)
    # a language with a dictionary but no data for the pair
    data = tmp_path / "data"
    shutil.copytree(MULTI, data, ignore=shutil.ignore_patterns("batches.pt"))
    shutil.copy(data / "dict.en.txt", data / "dict.fr.txt")
    with pytest.raises(DataError, match="no 'train' data for en-fr"):
        build_task("--lang-pairs", "en-es,en-fr", data=data).load_dataset("train", combine=True)
    with pytest.raises(ConfigError, match="is required"):
        from fairseq_cli.train import legacy_overrides

        TASK_REGISTRY.build(
            compose_config(
                legacy_overrides([str(MULTI), "--task", "translation_multi_simple_epoch", "--arch", "transformer"])
            ).task
        )


# --- commands -----------------------------------------------------------------------------------
def fairseq_train(caplog, *argv):
    from fairseq_cli.train import main as train

    caplog.set_level("INFO")
    caplog.clear()
    train(
        [*argv, "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--cpu", "--no-epoch-checkpoints"]
    )
    return [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]


def losses(logs):
    return [float(line["loss"]) for line in logs if "num_updates" in line and "loss" in line]


def generate(capsys, *argv):
    from fairseq_cli.generate import main

    capsys.readouterr()
    main([*argv, "--num-workers", "0", "--cpu"])
    return parse(capsys.readouterr().out)


GENERATION = ["--task", "translation_multi_simple_epoch", "--gen-subset", "valid", "--encoder-langtok", "src"]
GENERATION += ["--decoder-langtok", "--lang-dict", str(LANGS), "--lang-pairs", "en-es,es-en"]


def test_readme_training_then_generation(tmp_path, caplog, capsys):
    """examples/multilingual/README.md's fairseq-train flags (a tiny model, a few updates), then its
    fairseq-generate flags, and fairseq-interactive: the source carries its language token, the
    hypotheses and references do not (unless --keep-inference-langtok)."""
    save = tmp_path / "ckpt"
    run = ["--max-tokens", "400", "--max-update", "12", "--save-dir", str(save)]
    logs = fairseq_train(caplog, str(MULTI), *TASK_FLAGS, *TINY, *README_TRAINING, *run)
    assert len(losses(logs)) >= 12 and losses(logs)[-1] < losses(logs)[0]
    state = load_checkpoint_to_cpu(str(save / "checkpoint_last.pt"))
    assert state["cfg"]["task"]["_name"] == "translation_multi_simple_epoch" and state["num_updates"] == 12
    assert state["model"]["encoder.embed_tokens.weight"].shape == (2019, 16)  # 2016 symbols + __es__ __fr__ __en__

    model = ["--path", str(save / "checkpoint_last.pt"), "--source-lang", "en", "--target-lang", "es"]
    search = ["--beam", "2", "--max-len-b", "5", "--batch-size", "32"]
    records = generate(capsys, str(MULTI), *model, *GENERATION, *search)
    by_kind = {kind: [v for k, v in records if k == kind] for kind in "STH"}
    assert len(by_kind["S"]) == len(by_kind["H"]) == 40
    assert all(s[1].startswith("__en__ ") for s in by_kind["S"])
    assert not any("__es__" in v[-1] for v in by_kind["T"] + by_kind["H"])
    kept = generate(capsys, str(MULTI), *model, *GENERATION, *search, "--keep-inference-langtok")
    assert all(v[2].startswith("__es__") for k, v in kept if k == "H")

    from fairseq_cli.interactive import main as interactive

    lines = tmp_path / "input.en"
    lines.write_text("In the beginning God created the heaven and the earth.\nAnd God saw the light.\n")
    interactive([str(MULTI), *model, *GENERATION, "--beam", "2", "--buffer-size", "2", "--input", str(lines), "--cpu"])
    out = parse(capsys.readouterr().out)
    assert [v[1] for k, v in out if k == "S"][0].split()[:3] == ["__en__", "In", "the"]
    hypotheses = [v for k, v in out if k == "H"]
    assert len(hypotheses) == 2 and not any("__es__" in h[2] for h in hypotheses)


def test_a_resumed_run_makes_the_uninterrupted_runs_updates(tmp_path, caplog):
    """Stopped in its second epoch (each epoch draws other pairs) and resumed: the same updates."""
    flags = [str(MULTI), *TASK_FLAGS, *TINY, *README_TRAINING, "--max-tokens", "2400", "--seed", "4"]
    full = losses(fairseq_train(caplog, *flags, "--max-update", "8", "--save-dir", str(tmp_path / "full")))
    part = tmp_path / "part"
    first = losses(fairseq_train(caplog, *flags, "--max-update", "7", "--save-dir", str(part)))
    state = load_checkpoint_to_cpu(str(part / "checkpoint_last.pt"))
    assert (
        state["extra_state"]["train_iterator"]["epoch"] == 2
        and state["extra_state"]["train_iterator"]["iterations_in_epoch"] > 0
    )
    rest = losses(fairseq_train(caplog, *flags, "--max-update", "8", "--save-dir", str(part)))
    assert first + rest == pytest.approx(full, rel=1e-6)
    ours = load_checkpoint_to_cpu(str(part / "checkpoint_last.pt"))["model"]
    theirs = load_checkpoint_to_cpu(str(tmp_path / "full" / "checkpoint_last.pt"))["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


FAIRSEQ_MODEL = CHECKPOINTS / "multi_simple_epoch.pt"
DIRECTIONS = [("en", "es"), ("es", "en")]


def fairseqs_hypotheses(src, tgt):
    """checkpoints/multi_simple_epoch.generate_valid.{src}-{tgt}.txt: fairseq-generate's H- lines for the
    valid data of a direction, from the model fairseq trained on both (the fixtures' README)."""
    text = (CHECKPOINTS / f"multi_simple_epoch.generate_valid.{src}-{tgt}.txt").read_text(encoding="utf-8")
    theirs = [line.split("\t") for line in text.splitlines()]
    assert len(theirs) == (40 if src == "en" else 20)
    assert len({h[2] for h in theirs}) > len(theirs) // 2  # a model that reads its source
    return [(h[0][2:], float(h[1]), h[2]) for h in theirs]


@pytest.mark.parametrize("src,tgt", DIRECTIONS)
def test_fairseqs_model_translates_as_fairseq_through_the_tasks_hooks(src, tgt):
    """The fairseq-trained checkpoint rebuilt (its argparse config converted), the task's inference
    dataset, build_generator and inference_step (the target's token forced first, then stripped)."""
    from fairseq_lite.checkpoint.inference import load_model_for_inference
    from fairseq_lite.inference.output import hypothesis_lines

    overrides = {"data": str(MULTI), "source_lang": src, "target_lang": tgt, "lang_dict": str(LANGS)}
    _, task, model = load_model_for_inference(str(FAIRSEQ_MODEL), task_overrides=overrides)
    model.eval()
    task.load_dataset("valid")
    itr = task.get_batch_iterator(task.dataset("valid"), max_sentences=16, max_positions=(1024, 1024))
    generator = task.build_generator([model], {"beam": 4, "max_len_b": 12})
    d = task.target_dictionary
    assert generator.symbols_to_strip_from_output == {d.eos(), d.index(f"__{tgt}__")}
    ours = {}
    for sample in itr.next_epoch_itr(shuffle=False):
        for sample_id, hypos in zip(sample["id"].tolist(), task.inference_step(generator, [model], sample)):
            line = hypothesis_lines(sample_id, hypos[0], d, None, generator.symbols_to_strip_from_output, str)[0][0]
            ours[str(sample_id)] = line.split("\t")
    for sample_id, score, hypothesis in fairseqs_hypotheses(src, tgt):
        assert ours[sample_id][2] == hypothesis
        assert float(ours[sample_id][1]) == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("src,tgt", DIRECTIONS)
def test_fairseq_generate_gives_fairseqs_translations_on_its_multilingual_model(capsys, src, tgt):
    """The same through fairseq-generate with the README's generation flags."""
    records = generate(
        capsys,
        str(MULTI),
        "--path",
        str(FAIRSEQ_MODEL),
        *GENERATION,
        "--source-lang",
        src,
        "--target-lang",
        tgt,
        "--beam",
        "4",
        "--max-len-b",
        "12",
        "--batch-size",
        "16",
    )
    ours = {values[0]: values for kind, values in records if kind == "H"}
    for sample_id, score, hypothesis in fairseqs_hypotheses(src, tgt):
        assert ours[sample_id][2] == hypothesis
        assert float(ours[sample_id][1]) == pytest.approx(score, abs=1e-4)


def test_finetune_from_fairseqs_model(tmp_path, caplog):
    """The README's fine-tuning: --finetune-from-model with the same task flags starts from its weights."""
    model = [*TINY, "--encoder-layers", "2", "--decoder-layers", "2"]  # the fairseq model's depth
    logs = fairseq_train(
        caplog,
        str(MULTI),
        *TASK_FLAGS,
        *model,
        *README_TRAINING,
        "--max-tokens",
        "400",
        "--max-update",
        "1",
        "--finetune-from-model",
        str(FAIRSEQ_MODEL),
        "--save-dir",
        str(tmp_path),
    )
    assert losses(logs)[0] < 8  # a trained model's loss: an untrained one's is about log2(2019) + smoothing = 11.5
