"""The LSTM decoder of fairseq's LSTM models (`lstm`, `lstm_lm`), its attention layer and fairseq's
initialization of LSTM-model parameters.

    target -> embed -> dropout_in -> for each step: [embedding; previous attentional output] (input feeding,
              with an encoder only) -> LSTMCell layers (started from the encoder's final states, or zeros)
              -> attention over the source (with an encoder) -> dropout_out
           -> [additional_fc] -> vocabulary logits (or an adaptive softmax's features)

Module and parameter names are fairseq 0.12.2's (fairseq/models/lstm.py), so its checkpoints load one to one.
`encoder_out` is the LSTM encoder's tuple (outputs S x B x C, final_hiddens L x B x C, final_cells L x B x C,
encoder_padding_mask S x B), right-padded. `extra` is fairseq-lite's dict, {"attn": [B x T x S or None]}, not
the bare attention tensor fairseq's LSTMDecoder returns, so that --print-alignment can read it.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.models.fairseq_model import DecoderOut, FairseqIncrementalDecoder
from fairseq_lite.modules.adaptive_softmax import AdaptiveSoftmax
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.multihead_attention import IncrementalState

# fairseq's fallback (1e5) when neither the task nor the model sets one; an int here, as position limits are
# compared with lengths.
DEFAULT_MAX_TARGET_POSITIONS = 100000

LSTMEncoderOut = tuple[Tensor, Tensor, Tensor, Tensor]


class AttentionLayer(nn.Module):
    """Luong's "general" attention: scores = source_hids . W_in(h), then tanh(W_out [context; h])."""

    def __init__(self, input_embed_dim: int, source_embed_dim: int, output_embed_dim: int, bias: bool = False):
        super().__init__()
        self.input_proj = Linear(input_embed_dim, source_embed_dim, bias=bias)
        self.output_proj = Linear(input_embed_dim + source_embed_dim, output_embed_dim, bias=bias)

    def forward(self, input: Tensor, source_hids: Tensor, encoder_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """input: B x H; source_hids: S x B x C; mask: S x B (True at pads). Returns (B x out, scores S x B)."""
        x = self.input_proj(input)
        attn_scores = (source_hids * x.unsqueeze(0)).sum(dim=2)
        if encoder_padding_mask is not None:
            # Masked in fp32 and cast back, as fairseq does for fp16.
            attn_scores = attn_scores.float().masked_fill(encoder_padding_mask, float("-inf")).type_as(attn_scores)
        attn_scores = F.softmax(attn_scores, dim=0)
        context = (attn_scores.unsqueeze(2) * source_hids).sum(dim=0)
        return torch.tanh(self.output_proj(torch.cat((context, input), dim=1))), attn_scores


class LSTMDecoder(FairseqIncrementalDecoder):
    """Unrolled one step at a time (input feeding needs each step's attentional output before the next),
    so a full forward pass and incremental decoding compute the same thing; the cache holds each layer's
    (h, c) and the last input feed."""

    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        hidden_size: int = 512,
        out_embed_dim: int = 512,
        num_layers: int = 1,
        dropout_in: float = 0.1,
        dropout_out: float = 0.1,
        attention: bool = True,
        encoder_output_units: int = 512,
        pretrained_embed: nn.Embedding | None = None,
        share_input_output_embed: bool = False,
        adaptive_softmax_cutoff: list[int] | None = None,
        max_target_positions: int = DEFAULT_MAX_TARGET_POSITIONS,
        residuals: bool = False,
    ):
        super().__init__(dictionary)
        self.dropout_in_module = FairseqDropout(float(dropout_in), module_name=type(self).__name__)
        self.dropout_out_module = FairseqDropout(float(dropout_out), module_name=type(self).__name__)
        self.hidden_size = hidden_size
        self.share_input_output_embed = share_input_output_embed
        # fairseq returns the attention (in eval mode) unless make_generation_fast_ turned it off: it is
        # computed at every step anyway.
        self.need_attn = True
        self.max_target_positions = max_target_positions
        self.residuals = residuals
        self.num_layers = num_layers
        num_embeddings = len(dictionary)
        if pretrained_embed is None:
            pretrained_embed = Embedding(num_embeddings, embed_dim, dictionary.pad())
        self.embed_tokens = pretrained_embed

        self.encoder_output_units = encoder_output_units
        # The encoder's final states start the decoder: projected when their width differs (bidirectional).
        self.encoder_hidden_proj = self.encoder_cell_proj = None
        if encoder_output_units not in (hidden_size, 0):
            self.encoder_hidden_proj = Linear(encoder_output_units, hidden_size)
            self.encoder_cell_proj = Linear(encoder_output_units, hidden_size)
        # Input feeding (arxiv.org/abs/1508.04025): the previous step's output joins the embedding; a
        # decoder without an encoder (the language model) has none.
        input_feed_size = 0 if encoder_output_units == 0 else hidden_size
        self.layers = nn.ModuleList(
            LSTMCell(input_feed_size + embed_dim if layer == 0 else hidden_size, hidden_size)
            for layer in range(num_layers)
        )
        self.attention = AttentionLayer(hidden_size, encoder_output_units, hidden_size) if attention else None
        # fairseq builds additional_fc whenever the widths differ, even beside an adaptive softmax that does not
        # use it: its parameters are in fairseq's checkpoints, so they are here too.
        self.additional_fc = Linear(hidden_size, out_embed_dim) if hidden_size != out_embed_dim else None
        self.adaptive_softmax = None
        self.fc_out = None
        if adaptive_softmax_cutoff is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                num_embeddings, hidden_size, adaptive_softmax_cutoff, dropout=float(dropout_out)
            )
        elif not share_input_output_embed:
            self.fc_out = Linear(out_embed_dim, num_embeddings)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: LSTMEncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        src_lengths: Tensor | None = None,
    ) -> DecoderOut:
        """prev_output_tokens: B x T. Returns (logits B x T x V, or B x 1 x V when incremental, extra), extra
        being {"attn": [the attention B x T x S, or None in training, without attention, or need_attn off]}."""
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return self.output_layer(x), extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: LSTMEncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
    ) -> DecoderOut:
        cached = self.get_incremental_state(incremental_state, "cached_state")
        if cached is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]  # the earlier steps are in the cache
        bsz, seqlen = prev_output_tokens.size()
        x = self.dropout_in_module(self.embed_tokens(prev_output_tokens)).transpose(0, 1)  # T x B x C

        encoder_outs = encoder_padding_mask = None
        if encoder_out is not None:
            encoder_outs, encoder_hiddens, encoder_cells, encoder_padding_mask = encoder_out[:4]
        if cached is not None:
            prev_hiddens, prev_cells = list(cached["prev_hiddens"]), list(cached["prev_cells"])
            input_feed = cached["input_feed"]
        elif encoder_out is not None:
            prev_hiddens = [encoder_hiddens[i] for i in range(self.num_layers)]
            prev_cells = [encoder_cells[i] for i in range(self.num_layers)]
            if self.encoder_hidden_proj is not None:
                prev_hiddens = [self.encoder_hidden_proj(h) for h in prev_hiddens]
                prev_cells = [self.encoder_cell_proj(c) for c in prev_cells]
            input_feed = x.new_zeros(bsz, self.hidden_size)
        else:  # no encoder: zero states, no input feeding
            zero = x.new_zeros(bsz, self.hidden_size)
            prev_hiddens, prev_cells = [zero] * self.num_layers, [zero] * self.num_layers
            input_feed = None
        if self.attention is not None and (encoder_outs is None or encoder_outs.size(0) == 0):
            raise ValueError("attention is not supported if there are no encoder outputs")

        outs, attn_steps = [], []
        for j in range(seqlen):
            input = x[j] if input_feed is None else torch.cat((x[j], input_feed), dim=1)
            for i, rnn in enumerate(self.layers):
                hidden, cell = rnn(input, (prev_hiddens[i], prev_cells[i]))
                input = self.dropout_out_module(hidden)
                if self.residuals:
                    # fairseq adds the layer's hidden state of the previous step (not the layer's input).
                    input = input + prev_hiddens[i]
                prev_hiddens[i], prev_cells[i] = hidden, cell
            if self.attention is not None:
                out, step_attn = self.attention(hidden, encoder_outs, encoder_padding_mask)
                attn_steps.append(step_attn)
            else:
                out = hidden
            out = self.dropout_out_module(out)
            if input_feed is not None:
                input_feed = out
            outs.append(out)

        self.set_incremental_state(
            incremental_state,
            "cached_state",
            {
                "prev_hiddens": torch.stack(prev_hiddens),
                "prev_cells": torch.stack(prev_cells),
                "input_feed": input_feed,
            },
        )
        x = torch.stack(outs, dim=1)  # B x T x H
        if self.additional_fc is not None and self.adaptive_softmax is None:
            x = self.dropout_out_module(self.additional_fc(x))
        attn = None
        if not self.training and self.need_attn and attn_steps:
            attn = torch.stack(attn_steps, dim=1).permute(2, 1, 0)  # (S x B) per step -> B x T x S
        return x, {"attn": [attn]}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features  # the adaptive softmax scores them (adaptive_loss, get_normalized_probs)
        if self.share_input_output_embed:
            return F.linear(features, self.embed_tokens.weight)
        return self.fc_out(features)

    def get_cached_state(self, incremental_state: IncrementalState) -> tuple[list[Tensor], list[Tensor], Any]:
        """(each layer's h, each layer's c, the input feed or None), as fairseq's."""
        cached = self.get_incremental_state(incremental_state, "cached_state")
        if cached is None:
            raise ValueError("no cached state: run a decoding step with this incremental_state first")
        return list(cached["prev_hiddens"]), list(cached["prev_cells"]), cached["input_feed"]

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        cached = self.get_incremental_state(incremental_state, "cached_state")
        if cached is None:
            return
        input_feed = cached["input_feed"]
        self.set_incremental_state(
            incremental_state,
            "cached_state",
            {
                "prev_hiddens": cached["prev_hiddens"].index_select(1, new_order),  # layers x B x H
                "prev_cells": cached["prev_cells"].index_select(1, new_order),
                "input_feed": None if input_feed is None else input_feed.index_select(0, new_order),
            },
        )

    def max_positions(self) -> int:
        return self.max_target_positions

    def make_generation_fast_(self, need_attn: bool = False, **kwargs: Any) -> None:
        self.need_attn = need_attn


# fairseq's initialization for every LSTM-model parameter: U(-0.1, 0.1) (a zero pad row in embeddings).


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> nn.Embedding:
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.uniform_(m.weight, -0.1, 0.1)
    with torch.no_grad():
        m.weight[padding_idx].zero_()
    return m


def _uniform_init(m: nn.Module) -> nn.Module:
    for param in m.parameters():
        nn.init.uniform_(param, -0.1, 0.1)
    return m


def LSTM(input_size: int, hidden_size: int, **kwargs: Any) -> nn.LSTM:
    return _uniform_init(nn.LSTM(input_size, hidden_size, **kwargs))


def LSTMCell(input_size: int, hidden_size: int, **kwargs: Any) -> nn.LSTMCell:
    return _uniform_init(nn.LSTMCell(input_size, hidden_size, **kwargs))


def Linear(in_features: int, out_features: int, bias: bool = True, dropout: float = 0.0) -> nn.Linear:
    """fairseq's signature: `dropout` is accepted and unused, as there."""
    return _uniform_init(nn.Linear(in_features, out_features, bias=bias))
