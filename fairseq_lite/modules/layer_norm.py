"""fairseq's `LayerNorm(normalized_shape, eps, elementwise_affine, export)`: torch's LayerNorm (fused on
every device torch supports; `export` only chose a TorchScript-friendly kernel in fairseq), and
Fp32LayerNorm, which normalizes in fp32 whatever the input's precision."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def LayerNorm(
    normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, export: bool = False
) -> nn.LayerNorm:
    return nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)


class Fp32LayerNorm(nn.LayerNorm):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = F.layer_norm(
            input.float(),
            self.normalized_shape,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        )
        return output.type_as(input)
