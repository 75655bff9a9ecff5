"""fairseq's CompositeEncoder: several encoders run on the same source, their outputs a dict by name.

Each encoder is a child module under its name (`encoder.<name>.*` in a model's state dict, as fairseq's), and
reorders its own output.
"""

from typing import Any

from torch import Tensor

from fairseq_lite.models.fairseq_model import FairseqEncoder


class CompositeEncoder(FairseqEncoder):
    def __init__(self, encoders: dict[str, FairseqEncoder]):
        super().__init__(next(iter(encoders.values())).dictionary)
        self.encoders = encoders
        for name, encoder in encoders.items():
            self.add_module(name, encoder)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **unused: Any) -> dict[str, Any]:
        return {name: encoder(src_tokens, src_lengths) for name, encoder in self.encoders.items()}

    def reorder_encoder_out(self, encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
        return {
            name: encoder.reorder_encoder_out(encoder_out[name], new_order) for name, encoder in self.encoders.items()
        }

    def max_positions(self) -> int:
        return min(encoder.max_positions() for encoder in self.encoders.values())
