"""fairseq's multilingual translation: task `multilingual_translation` (one batch per language pair each step,
language tokens) and model `multilingual_transformer` (a FairseqMultiModel: per-pair encoder-decoders, shared
as asked). Parameter counts equal fairseq 0.12.2's, batches carry fairseq's language tokens, a fairseq-trained
checkpoint generates fairseq's hypotheses, and fairseq-train/-generate/-interactive run end to end."""

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse
from test_lstm import fairseq_train
from test_transformer import make_dict

from fairseq_lite.data import LanguagePairDataset, ListDataset, RoundRobinZipDatasets
from fairseq_lite.errors import ConfigError
from fairseq_lite.models.multilingual_transformer import MultilingualTransformerConfig, MultilingualTransformerModel
from fairseq_lite.registry import get_architecture
from fairseq_lite.tasks.multilingual_translation import MultilingualTranslationConfig, MultilingualTranslationTask

JOINED = FIXTURES / "joined"  # en-es, one dictionary for both sides


def model_cfg(arch: str = "multilingual_transformer_iwslt_de_en", **values):
    values = get_architecture(arch).values(values)
    values = {"max_source_positions": 1024, "max_target_positions": 1024, **values}
    return OmegaConf.merge(OmegaConf.structured(MultilingualTransformerConfig), values)


def pair_task(pairs=("de-en", "fr-en"), shared_dict=None, size=10000):
    langs = sorted({lang for pair in pairs for lang in pair.split("-")})
    dicts = OrderedDict((lang, shared_dict or make_dict(size)) for lang in langs)
    return SimpleNamespace(dicts=dicts, langs=langs, model_lang_pairs=list(pairs))


# fairseq 0.12.2's counts for --lang-pairs de-en,fr-en with 10,000-symbol dictionaries, measured once with fairseq
# itself (/tmp/fairseq-ref/bin/python): MultilingualTranslationTask(args, dicts, training=True), then
# ARCH_CONFIG_REGISTRY[arch](args), ARCH_MODEL_REGISTRY[arch].build_model(args, task) and
# the unique parameters' sizes, less the zero-initialized copies of each encoder layer's weights fairseq keeps for its
# BetterTransformer fast path (in_proj_weight, fc1_weight, ...; as in test_transformer.py). "one dict": every
# language has the same dictionary (the sharing of embeddings needs it).
FAIRSEQ_PARAMS = [
    ("multilingual_transformer_iwslt_de_en", {}, False, 64640000),
    (
        "multilingual_transformer_iwslt_de_en",
        {"share_decoders": True, "share_decoder_input_output_embed": True},
        False,
        59520000,
    ),
    ("multilingual_transformer_iwslt_de_en", {"share_encoders": True}, False, 46903296),
    (
        "multilingual_transformer_iwslt_de_en",
        {"share_encoder_embeddings": True, "share_decoder_embeddings": True},
        True,
        59520000,
    ),
    ("multilingual_transformer_iwslt_de_en", {"share_all_embeddings": True}, True, 49280000),
    ("multilingual_transformer", {}, False, 83532800),
]


@pytest.mark.parametrize("arch,values,one_dict,expected", FAIRSEQ_PARAMS)
def test_parameter_counts_match_fairseq(arch, values, one_dict, expected):
    with torch.device("meta"):
        task = pair_task(shared_dict=make_dict(10000) if one_dict else None)
        model = MultilingualTransformerModel.build_model(model_cfg(arch, **values), task)
    assert model.num_parameters() == expected


def test_shared_decoders_are_one_module_under_both_pairs_names():
    task = pair_task(size=30)
    model = MultilingualTransformerModel.build_model(
        model_cfg(encoder_layers=1, decoder_layers=1, encoder_embed_dim=8, decoder_embed_dim=8, share_decoders=True),
        task,
    )
    assert model.models["de-en"].decoder is model.models["fr-en"].decoder
    assert model.models["de-en"].encoder is not model.models["fr-en"].encoder
    names = model.state_dict()
    assert "models.de-en.decoder.embed_tokens.weight" in names and "models.fr-en.decoder.embed_tokens.weight" in names
    assert model.encoder is model.models["de-en"].encoder  # what generation reads: the first pair's
    assert model.max_positions() == {"de-en": (1024, 1024), "fr-en": (1024, 1024)}


def test_sharing_needs_one_dictionary_and_a_multilingual_task():
    with pytest.raises(ConfigError, match="share_all_embeddings.*one dictionary for de, en, fr"):
        task = pair_task(size=30)
        task.dicts["en"] = make_dict(31)  # another vocabulary
        MultilingualTransformerModel.build_model(model_cfg(share_all_embeddings=True), task)
    with pytest.raises(ConfigError, match="needs task._name.*=multilingual_translation"):
        MultilingualTransformerModel.build_model(model_cfg(), SimpleNamespace(source_dictionary=make_dict(30)))


def tokens(*rows):
    return [torch.LongTensor(r) for r in rows]


def test_round_robin_repeats_the_shorter_dataset_in_its_own_order():
    d = make_dict(20)
    long = LanguagePairDataset(ListDataset(tokens(*[[5 + i, 2] for i in range(5)])), np.full(5, 2), d, shuffle=False)
    short = LanguagePairDataset(ListDataset(tokens([9, 9, 2], [8, 2])), np.array([3, 2]), d, shuffle=False)
    zipped = RoundRobinZipDatasets(OrderedDict([("a-b", long), ("c-d", short)]))
    assert list(zipped.ordered_indices()) == [0, 1, 2, 3, 4]
    # the short dataset in its own (length-sorted) order, repeated: item 1 ([8, 2]) first
    assert [zipped[i]["c-d"]["source"].tolist() for i in range(5)] == [[8, 2], [9, 9, 2], [8, 2], [9, 9, 2], [8, 2]]
    batch = zipped.collater([zipped[i] for i in range(2)])
    assert set(batch) == {"a-b", "c-d"} and batch["c-d"]["net_input"]["src_tokens"].shape == (2, 3)
    # filtering is per dataset: the 3-token item of c-d goes, a-b keeps everything
    zipped.filter_indices_by_size(np.arange(5), {"a-b": (2, 2), "c-d": (2, 2)})
    assert [zipped[i]["c-d"]["source"].tolist() for i in range(3)] == [[8, 2]] * 3 and len(zipped) == 5
    one = RoundRobinZipDatasets(OrderedDict([("a-b", long), ("c-d", short)]), eval_key="c-d")
    one.ordered_indices()
    assert one[0]["source"].tolist() == [8, 2]


def task_cfg(**values):
    values = {"data": str(JOINED), "lang_pairs": "en-es,es-en", "train_subset": "train", **values}
    return OmegaConf.merge(OmegaConf.structured(MultilingualTranslationConfig), values)


def test_language_tokens_are_fairseqs():
    """--encoder-langtok tgt: the source's final eos becomes __{tgt}__; --decoder-langtok: prev_output_tokens
    starts with __{tgt}__ instead of eos; every dictionary gets __en__, __es__ at its end, in sorted order."""
    task = MultilingualTranslationTask.setup_task(task_cfg(encoder_langtok="tgt", decoder_langtok=True))
    d = task.dicts["en"]
    assert [d[len(d) - 2], d[len(d) - 1]] == ["__en__", "__es__"]
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    dataset.ordered_indices()
    batch = dataset.collater([dataset[i] for i in range(4)])
    for pair, tgt in (("en-es", "es"), ("es-en", "en")):
        net_input = batch[pair]["net_input"]
        assert net_input["src_tokens"][:, -1].eq(d.index(f"__{tgt}__")).all()  # left-padded: the last column
        assert net_input["prev_output_tokens"][:, 0].eq(d.index(f"__{tgt}__")).all()
        assert batch[pair]["target"][:, 0].ne(d.index(f"__{tgt}__")).all()


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="lang_pairs.*is required"):
        MultilingualTranslationTask.check_config(task_cfg(lang_pairs=None))
    with pytest.raises(ConfigError, match="'en_es' is not a pair"):
        MultilingualTranslationTask.check_config(task_cfg(lang_pairs="en_es"))
    with pytest.raises(ConfigError, match="source_lang.*and.*target_lang.*go together"):
        MultilingualTranslationTask.check_config(task_cfg(source_lang="en"))
    with pytest.raises(ConfigError, match="target_lang=fr.*is in none of"):
        MultilingualTranslationTask.check_config(task_cfg(source_lang="en", target_lang="fr"))


TINY = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16"]
TINY += ["--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32"]
TINY += ["--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]


def test_fairseq_train_generate_and_interactive_as_the_translation_readme(tmp_path, caplog, capsys, monkeypatch):
    """examples/translation/README.md's multilingual commands (tiny, capped), then one direction decoded."""
    losses = fairseq_train(
        caplog,
        str(JOINED),
        "--task",
        "multilingual_translation",
        "--lang-pairs",
        "en-es,es-en",
        "--arch",
        "multilingual_transformer_iwslt_de_en",
        "--share-decoders",
        "--share-decoder-input-output-embed",
        *TINY,
        "--optimizer",
        "adam",
        "--adam-betas",
        "(0.9, 0.98)",
        "--lr",
        "0.005",
        "--lr-scheduler",
        "inverse_sqrt",
        "--warmup-updates",
        "4",
        "--label-smoothing",
        "0.1",
        "--criterion",
        "label_smoothed_cross_entropy",
        "--max-tokens",
        "400",
        "--max-update",
        "6",
        "--save-dir",
        str(tmp_path),
        "--cpu",
    )
    assert len(losses) >= 6 and losses[-1] < losses[0]
    from fairseq_cli.generate import main as generate

    capsys.readouterr()
    generate(
        [str(JOINED), "--task", "multilingual_translation", "--lang-pairs", "en-es,es-en", "--source-lang", "es"]
        + ["--target-lang", "en", "--path", str(tmp_path / "checkpoint_last.pt"), "--gen-subset", "valid"]
        + ["--beam", "2", "--max-len-b", "4", "--batch-size", "16", "--cpu"]
    )
    hypotheses = [values for kind, values in parse(capsys.readouterr().out) if kind == "H"]
    assert len(hypotheses) == 40

    import io

    from fairseq_cli.interactive import main as interactive

    monkeypatch.setattr("sys.stdin", io.StringIO("y dijo Dios\n"))
    interactive(
        [str(JOINED), "--task", "multilingual_translation", "--lang-pairs", "en-es,es-en", "--source-lang", "es"]
        + ["--target-lang", "en", "--path", str(tmp_path / "checkpoint_last.pt"), "--beam", "2", "--max-len-b", "4"]
        + ["--cpu"]
    )
    assert sum(kind == "H" for kind, _ in parse(capsys.readouterr().out)) == 1


def test_generate_gives_fairseqs_translations_on_a_fairseq_multilingual_transformer(capsys):
    """checkpoints/multilingual.pt: fairseq 0.12.2 trained it on en-es,es-en with language tokens and shared
    decoders (the fixtures' README); built for es-en alone, it loads that pair's weights and decodes as fairseq."""
    from fairseq_cli.generate import main as generate

    for src, tgt in (("en", "es"), ("es", "en")):
        generate(
            [str(JOINED), "--path", str(CHECKPOINTS / "multilingual.pt"), "--gen-subset", "valid"]
            + ["--task", "multilingual_translation", "--lang-pairs", "en-es,es-en", "--encoder-langtok", "tgt"]
            + ["--decoder-langtok", "--source-lang", src, "--target-lang", tgt]
            + ["--beam", "4", "--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu"]
        )
        ours = {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}
        fixture = CHECKPOINTS / f"multilingual.generate_valid.{src}-{tgt}.txt"
        theirs = [line.split("\t") for line in fixture.read_text(encoding="utf-8").splitlines()]
        assert len(theirs) == 40 and len(ours) == 40
        assert len({h[2] for h in theirs}) > 20  # a model that reads its source
        for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
            assert ours[sample_id][2] == text
            assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


def test_inference_needs_a_direction_and_scores_references(capsys, monkeypatch):
    """Without -s/-t the task would batch every pair: generate and interactive say so in one line. With them,
    --score-reference scores the pair's references through the one-pair model."""
    import io

    from fairseq_cli.generate import main as generate
    from fairseq_cli.interactive import main as interactive

    flags = ["--path", str(CHECKPOINTS / "multilingual.pt"), "--task", "multilingual_translation"]
    flags += ["--lang-pairs", "en-es,es-en", "--encoder-langtok", "tgt", "--decoder-langtok", "--cpu"]
    with pytest.raises(ConfigError, match="no net_input.*--source-lang and --target-lang"):
        generate([str(JOINED), *flags, "--gen-subset", "valid"])
    monkeypatch.setattr("sys.stdin", io.StringIO("y dijo Dios\n"))
    with pytest.raises(ConfigError, match="give task.source_lang.*the direction to translate"):
        interactive([str(JOINED), *flags])
    capsys.readouterr()
    generate([str(JOINED), *flags, "--gen-subset", "valid", "-s", "es", "-t", "en", "--score-reference"])
    scored = [values for kind, values in parse(capsys.readouterr().out) if kind == "H"]
    assert len(scored) == 40 and all(float(v[1]) < 0 for v in scored)


def test_too_long_pairs_are_named_per_pair(tmp_path):
    """A validation pair longer than max_positions is a one-line error naming its language pair and sample."""
    from fairseq_lite.errors import DataError

    task = MultilingualTranslationTask.setup_task(task_cfg(max_source_positions=12))
    task.load_dataset("valid")
    with pytest.raises(DataError, match=r"samples are longer than .* of (en-es|es-en) \(e\.g\. its sample #\d+, size"):
        task.get_batch_iterator(task.dataset("valid"), max_tokens=1000, max_positions=task.max_positions())
