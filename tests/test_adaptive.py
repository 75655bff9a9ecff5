"""Adaptive input and adaptive softmax as fairseq 0.12.2 builds them: the same parameters (counted with
fairseq itself), the same parameter names, a loss equal to -log p(target) under the full distribution,
and training, eval-lm and generation through them."""

import math

import pytest
import torch
from conftest import tiny_lm_overrides
from omegaconf import OmegaConf

import fairseq_lite.models  # noqa: F401  (registers the models)
from fairseq_lite.errors import ConfigError
from fairseq_lite.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq_lite.options import compose_config
from fairseq_lite.training import build_trainer, check_training_config, train

PAD = 1


class FakeDictionary:
    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def pad(self):
        return PAD


class FakeTask:
    def __init__(self, vocab):
        self.source_dictionary = self.target_dictionary = FakeDictionary(vocab)


def cfg_of(**values):
    base = dict(
        decoder_layers=1,
        decoder_embed_dim=32,
        decoder_ffn_embed_dim=64,
        decoder_attention_heads=2,
        tokens_per_sample=32,
        max_target_positions=32,
        add_bos_token=False,
    )
    return OmegaConf.structured(TransformerLanguageModelConfig(**{**base, **values}))


TIED = dict(
    decoder_input_dim=32,
    decoder_output_dim=32,
    adaptive_input=True,
    adaptive_input_cutoff="200,500",
    adaptive_softmax_cutoff="200,500",
    tie_adaptive_weights=True,
    tie_adaptive_proj=True,
)

# What fairseq 0.12.2 builds for these options on a 1,272-word dictionary, 1 layer, width 32 (counted
# with fairseq's own `fairseq-train ... --arch transformer_lm`; a state dict with the same names).
FAIRSEQ_COUNTS = [
    ({}, 1343840),
    ({"adaptive_softmax_cutoff": "200,500"}, 941024),
    ({"adaptive_softmax_cutoff": "200,500", "adaptive_softmax_factor": 2, "decoder_output_dim": 48}, 705616),
    ({"adaptive_input": True, "adaptive_input_cutoff": "300,700", "adaptive_input_factor": 2}, 1034080),
    (TIED, 20296),
]


@pytest.mark.parametrize("values, count", FAIRSEQ_COUNTS, ids=lambda v: str(v) if isinstance(v, int) else None)
def test_parameter_counts_match_fairseq(values, count):
    model = TransformerLanguageModel.build_model(cfg_of(**values), FakeTask(1272))
    assert model.num_parameters() == count


def test_tied_weights_are_the_adaptive_inputs_own():
    model = TransformerLanguageModel.build_model(cfg_of(**TIED), FakeTask(1272))
    embed, softmax = model.decoder.embed_tokens, model.decoder.adaptive_softmax
    assert softmax.head.word_proj.weight is embed.embeddings[0][0].weight
    for band in (1, 2):
        assert softmax.tail[band - 1][2].weight is embed.embeddings[band][0].weight  # output: the band's table
        assert softmax.tail[band - 1][0].weight is embed.embeddings[band][1].weight  # projection, transposed
    names = set(model.state_dict())
    assert {"decoder.adaptive_softmax.head.class_proj.weight", "decoder.embed_tokens.embeddings.2.1.weight"} <= names


def test_loss_is_minus_log_probability_under_the_full_distribution(tiny_data_bin, tmp_path):
    cfg = compose_config(
        tiny_lm_overrides(tiny_data_bin, tmp_path)
        + [
            "model.adaptive_input=true",
            "model.adaptive_input_cutoff='200,500'",
            "model.adaptive_softmax_cutoff='200,500'",
            "model.tie_adaptive_weights=true",
            "criterion=adaptive_loss",
        ]
    )
    trainer = build_trainer(cfg)
    model, criterion = trainer.model.eval(), trainer.criterion
    trainer.task.load_dataset("train")
    dataset = trainer.task.dataset("train")
    sample = dataset.collater([dataset[i] for i in range(6)])
    with torch.no_grad():
        loss, sample_size, _ = criterion(model, sample)
        net_output = model(**sample["net_input"])
        full = model.get_normalized_probs(net_output, log_probs=True)  # every cluster for every row
        only_targets = model.get_normalized_probs(net_output, log_probs=True, sample=sample)
        per_position, _ = criterion.compute_loss(model, net_output, sample, reduce=False)
    target = sample["target"]
    mask = target.ne(PAD)
    expected = -full.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask].sum()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones_like(full[..., 0]), rtol=0, atol=1e-5)
    assert torch.equal(full.gather(-1, target.unsqueeze(-1)), only_targets.gather(-1, target.unsqueeze(-1)))
    torch.testing.assert_close(per_position.sum(), loss, rtol=1e-5, atol=1e-4)
    assert sample_size == int(mask.sum())


def test_a_tiny_adaptive_lm_trains_scores_and_generates(tiny_data_bin, tmp_path, capsys):
    from fairseq_cli.eval_lm import main as eval_lm
    from fairseq_cli.generate import main as generate

    adaptive = [
        "model.adaptive_input=true",
        "model.adaptive_input_cutoff='200,500'",
        "model.adaptive_softmax_cutoff='200,500'",
        "model.adaptive_softmax_dropout=0.1",
        "model.tie_adaptive_weights=true",
        "model.tie_adaptive_proj=true",
        "model.decoder_layerdrop=0.1",
        "criterion=adaptive_loss",
    ]
    best = train(compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, max_update=40, extra=adaptive)))
    assert best is not None and math.isfinite(best) and best < math.log2(1272)  # better than uniform
    path = str(tmp_path / "checkpoint_last.pt")
    result = eval_lm(
        [str(tiny_data_bin), "--path", path, "--gen-subset", "valid", "--max-tokens", "256", "--num-workers", "0"]
    )
    assert math.isfinite(result["ppl"]) and result["ppl"] < 1272
    capsys.readouterr()
    out = generate(
        [str(tiny_data_bin), "--path", path, "--gen-subset", "test", "--beam", "2", "--max-len-b", "5"]
        + ["--batch-size", "8", "--num-workers", "0"]
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("H-")]
    assert out["num_sentences"] > 0 and len(lines) == out["num_sentences"]
    assert all(math.isfinite(float(line.split("\t")[1])) for line in lines)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(tie_adaptive_weights=True), r"model\.tie_adaptive_weights needs model\.adaptive_input=true"),
        (dict(tie_adaptive_proj=True), r"model\.tie_adaptive_proj needs model\.tie_adaptive_weights=true"),
        (dict(adaptive_softmax_cutoff="500,200"), r"adaptive_softmax_cutoff='500,200' must be increasing"),
        (dict(adaptive_input=True), r"adaptive_input_cutoff=None must be a comma separated list"),
        (
            dict(adaptive_softmax_cutoff="20", share_decoder_input_output_embed=True),
            r"share_decoder_input_output_embed and model\.adaptive_softmax_cutoff cannot be combined",
        ),
        (dict(TIED, adaptive_softmax_cutoff="200,600"), r"needs the same model\.adaptive_input_cutoff"),
        (dict(character_embeddings=True), r"model\.character_embeddings=true: fairseq-lite does not implement"),
        (dict(quant_noise_pq=0.1), r"model\.quant_noise_pq=0\.1: fairseq-lite does not implement"),
    ],
)
def test_impossible_combinations_are_one_line_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        TransformerLanguageModel.check_config(cfg_of(**values))


def test_cutoff_past_the_vocabulary_and_adaptive_loss_without_adaptive_softmax(tiny_data_bin, tmp_path):
    with pytest.raises(ConfigError, match=r"the last cutoff is larger than the vocabulary \(1272 symbols\)"):
        build_trainer(
            compose_config(
                tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["model.adaptive_softmax_cutoff='20,5000'"])
            )
        )
    with pytest.raises(ConfigError, match="criterion adaptive_loss needs a model with an adaptive softmax"):
        check_training_config(
            compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["criterion=adaptive_loss"]))
        )


def test_layerdrop_skips_layers_in_training_only():
    model = TransformerLanguageModel.build_model(cfg_of(decoder_layers=4, decoder_layerdrop=0.999), FakeTask(1272))
    tokens = torch.randint(4, 1272, (2, 8))
    model.train()
    torch.manual_seed(0)
    _, extra = model(tokens)
    assert len(extra["inner_states"]) == 1  # every layer dropped (p = 0.999)
    model.eval()
    _, extra = model(tokens)
    assert len(extra["inner_states"]) == 1 + 4  # evaluation runs them all
