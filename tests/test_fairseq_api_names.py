"""fairseq's helper API under fairseq_lite's name (issue 13, items 1 and 3): `utils`, incremental state,
`modules`, `distributed.utils`, `tasks.setup_task`, `models.build_model` and `checkpoint_utils`, each
behaving as fairseq 0.12.2's does. Expected values marked "fairseq 0.12.2" were printed by the real
fairseq 0.12.2 (../shared/bench/fairseq_reference.sh) on the same inputs."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_lite import checkpoint_utils, utils
from fairseq_lite.distributed import utils as dist_utils
from fairseq_lite.models import FairseqIncrementalDecoder, build_model
from fairseq_lite.modules import FairseqDropout, GradMultiply, LayerNorm, checkpoint_wrapper
from fairseq_lite.modules.layer_norm import LayerNorm as LayerNormAtItsPath
from fairseq_lite.tasks import setup_task

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq_0.12.2"


def test_utils_match_fairseq():
    t = torch.tensor([[1, 1, 5, 6], [7, 8, 9, 1], [1, 2, 3, 4]])
    # fairseq 0.12.2
    assert utils.convert_padding_direction(t, 1, right_to_left=True).tolist() == [
        [5, 6, 1, 1],
        [1, 7, 8, 9],
        [4, 1, 2, 3],
    ]
    assert utils.convert_padding_direction(t, 1, left_to_right=True).tolist() == [
        [5, 6, 1, 1],
        [8, 9, 1, 7],
        [2, 3, 4, 1],
    ]
    right = torch.tensor([[5, 6, 1, 1], [7, 8, 9, 1]])
    assert utils.convert_padding_direction(right, 1, right_to_left=True).tolist() == [[1, 1, 5, 6], [1, 7, 8, 9]]
    assert utils.make_positions(torch.tensor([[1, 1, 5, 6], [7, 8, 9, 1]]), 1).tolist() == [[1, 1, 2, 3], [2, 3, 4, 1]]
    assert utils.resolve_max_positions(1024, (512, 2048), None) == (512, 1024)
    assert utils.resolve_max_positions((100, 200), (150, 150)) == (100, 150)
    assert utils.resolve_max_positions(None, 5) == 5
    assert utils.get_perplexity(3.3219) == 10.0 and utils.get_perplexity(None) == 0.0
    assert utils.get_perplexity(2000.0) == float("inf")
    assert utils.strip_pad(torch.tensor([1, 4, 5, 1]), 1).tolist() == [4, 5]
    assert utils.eval_str_list("[1, 2]", int) == [1, 2] and utils.eval_str_list(3, int) == [3]
    assert utils.eval_bool("False") is False and utils.eval_bool(None, True) is True

    class Args:
        x = None
        y = 0

    assert not utils.safe_hasattr(Args, "x") and utils.safe_hasattr(Args, "y")
    assert utils.safe_getattr(Args, "x", 5) is None  # fairseq 0.12.2: only a config's None gives the default
    assert utils.safe_getattr(OmegaConf.create({"x": None}), "x", 5) == 5
    assert utils.split_paths("a:b::c") == ["a", "b", "", "c"]
    assert utils.item(torch.tensor(3.5)) == 3.5 and utils.item([4]) == 4
    with pytest.raises(RuntimeError, match="activation_fn 'swish' not supported"):
        utils.get_activation_fn("swish")
    assert utils.get_activation_fn("gelu_fast") is utils.gelu_accurate
    sample = {"a": torch.zeros(2, dtype=torch.float16), "b": [torch.ones(1)], "c": 3}
    moved = utils.move_to_cpu(sample)
    assert moved["a"].dtype == torch.float32 and moved["c"] == 3 and isinstance(moved["b"], list)
    assert utils.softmax(torch.zeros(1, 4, dtype=torch.bfloat16), dim=-1).dtype == torch.float32


def test_incremental_state_is_kept_per_module_instance():
    class Decoder(FairseqIncrementalDecoder):
        def __init__(self):
            super().__init__(dictionary=None)

    a, b = Decoder(), Decoder()
    state: dict = {}
    utils.set_incremental_state(a, state, "cached_state", (1, 2))
    utils.set_incremental_state(b, state, "cached_state", (3, 4))
    assert utils.get_incremental_state(a, state, "cached_state") == (1, 2)
    assert utils.get_incremental_state(b, state, "cached_state") == (3, 4)
    assert utils.get_incremental_state(a, state, "other") is None and utils.get_incremental_state(a, None, "x") is None


def test_modules_behave_as_fairseqs():
    assert LayerNorm is LayerNormAtItsPath and isinstance(LayerNorm(8, export=True), torch.nn.LayerNorm)
    x = torch.randn(3, 4, requires_grad=True)
    GradMultiply.apply(x, 0.25).sum().backward()
    assert torch.equal(x.grad, torch.full((3, 4), 0.25))

    drop = FairseqDropout(0.5, module_name="m").eval()
    assert torch.equal(drop(torch.ones(100)), torch.ones(100))
    drop.make_generation_fast_("m", retain_dropout=True, retain_dropout_modules=["m"])
    assert (drop(torch.ones(100)) == 0).any()  # kept on at inference as asked

    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    inputs = torch.randn(5, 4)
    layer(inputs).sum().backward()
    plain = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    keys = list(layer.state_dict())
    checkpoint_wrapper(layer)(inputs).sum().backward()
    assert list(layer.state_dict()) == keys  # the same parameters and names
    assert all(torch.allclose(a, p.grad) for a, p in zip(plain, layer.parameters()))


def test_distributed_names_without_a_process_group():
    assert dist_utils.get_data_parallel_rank() == 0 and dist_utils.get_data_parallel_world_size() == 1
    assert dist_utils.get_global_rank() == 0 and dist_utils.get_global_world_size() == 1
    assert dist_utils.all_gather_list({"a": 1}) == [{"a": 1}]
    t = torch.ones(2)
    assert dist_utils.all_reduce(t) is t and dist_utils.is_master(None)


def test_checkpoint_utils_load_a_fairseq_trained_model_and_its_task():
    """fairseq's script API on a checkpoint written by fairseq 0.12.2, its data moved (arg_overrides)."""
    path = str(FIXTURES / "checkpoints" / "transformer_lm.pt")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [path], arg_overrides={"data": str(FIXTURES / "mono")}
    )
    assert cfg.task.data == str(FIXTURES / "mono") and len(models) == 1
    model = models[0].eval()
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    # The task the script got is the one that builds the same model again.
    again = build_model(cfg.model, setup_task(cfg.task))
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    tokens = torch.tensor([[task.target_dictionary.eos(), 10, 11, 12]])
    with torch.no_grad():
        logits, _ = model(tokens)
    assert logits.shape == (1, 4, len(task.target_dictionary))
    decoder_only, _ = checkpoint_utils.load_model_ensemble([path], arg_overrides={"data": str(FIXTURES / "mono")})
    fresh = build_model(cfg.model, task)
    checkpoint_utils.load_pretrained_component_from_model(fresh.decoder, path)
    assert all(torch.equal(v, state["model"]["decoder." + k]) for k, v in fresh.decoder.state_dict().items())
    assert len(decoder_only) == 1


def test_architecture_functions_fill_a_namespace_as_fairseqs():
    """A plugin's architecture calls ours on fairseq's argparse Namespace: unset values filled, set ones kept."""
    import argparse

    from fairseq_lite.models.transformer import base_architecture, tiny_architecture
    from fairseq_lite.models.transformer_lm import base_lm_architecture

    args = argparse.Namespace(decoder_layers=2, decoder_embed_dim=128)
    base_lm_architecture(args)
    assert args.decoder_layers == 2 and args.decoder_embed_dim == 128
    assert args.decoder_input_dim == 128 and args.decoder_ffn_embed_dim == 2048  # fairseq 0.12.2
    args = argparse.Namespace(encoder_embed_dim=256)
    base_architecture(args)
    assert args.decoder_embed_dim == 256 and args.encoder_layers == 6 and args.share_all_embeddings is False
    tiny = argparse.Namespace()
    tiny_architecture(tiny)
    assert (tiny.encoder_embed_dim, tiny.encoder_layers) == (64, 2)  # fairseq 0.12.2


def test_options_give_fairseqs_script_namespace():
    """fairseq's script recipe: a generation parser, parse_args_and_arch, setup_task, load_model_ensemble."""
    from fairseq_lite import options, tasks

    parser = options.get_generation_parser(default_task="language_modeling")
    parser.add_argument("--my-script-flag", type=int, default=3)
    lm = str(FIXTURES / "checkpoints" / "transformer_lm.pt")
    args = options.parse_args_and_arch(parser, [str(FIXTURES / "mono"), "--path", lm, "--beam", "2"])
    assert (args.task, args.data, args.path, args.beam, args.my_script_flag) == (
        "language_modeling",
        str(FIXTURES / "mono"),
        lm,
        2,
        3,
    )
    task = tasks.setup_task(args)
    models, _ = checkpoint_utils.load_model_ensemble([args.path], task=task)
    assert models[0].decoder.dictionary is task.target_dictionary

    train_args = options.parse_args_and_arch(
        options.get_training_parser(),
        ["DATA", "--task", "language_modeling", "--arch", "transformer_lm_gpt", "--decoder-layers", "2"],
    )
    # The architecture filled what was not given; what was given stayed (fairseq 0.12.2's values).
    assert (train_args.decoder_layers, train_args.decoder_embed_dim, train_args.decoder_attention_heads) == (2, 768, 12)
    assert train_args.arch == "transformer_lm_gpt" and train_args.data == "DATA"
    args, extra = options.parse_args_and_arch(
        options.get_training_parser(), ["DATA", "--unknown", "1"], parse_known=True
    )
    assert extra == ["--unknown", "1"] and args.task == "translation"  # fairseq's default task
