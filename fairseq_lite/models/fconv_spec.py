"""The layer specs of fairseq's convolutional models, read without `eval`.

fairseq evaluates `--encoder-layers "[(512, 3)] * 9 + [(1024, 3)] * 4"` and `--decoder-attention
"[True] * 2 + [False]"` as Python. These are read with a small evaluator over the same syntax: int and bool
literals, lists and tuples of them, `+` (concatenation, or of two ints) and `*` (a list by an int). Anything
else (names, calls, attributes, ...) is a one-line ConfigError, never executed.
"""

import ast
from typing import Any

from fairseq_lite.errors import ConfigError, setting

_ALLOWED = "int and bool literals, lists and tuples of them, + and *"


def eval_spec(text: Any, name: str) -> Any:
    """The value of the spec `text` (a string as on the command line; a value already parsed is taken as
    is), for the setting `name` (model.encoder_layers, ...) that errors name."""
    if not isinstance(text, str):
        return text
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ConfigError(f"{setting(name, repr(text))} is not a valid spec ({_ALLOWED})") from None
    return _eval(tree.body, text, name)


def _eval(node: ast.AST, text: str, name: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _eval(node.operand, text, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return -value
    elif isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(item, text, name) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval(node.left, text, name), _eval(node.right, text, name)
        try:
            if isinstance(node.op, ast.Add) and type(left) is type(right):
                return left + right
            if isinstance(node.op, ast.Mult):
                sequence, count = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(sequence, (list, tuple)) and type(count) is int and 0 <= count <= 10000:
                    return sequence * count
        except TypeError:
            pass
    raise ConfigError(f"{setting(name, repr(text))}: {ast.unparse(node)!r} is not allowed in a layer spec ({_ALLOWED})")


def conv_spec(text: Any, name: str, residuals: bool = True) -> tuple[tuple[int, int, int], ...]:
    """fairseq's convolution spec, each layer (out_channels, kernel_width[, residual]), residual defaulting
    to 1 (the previous layer's output; 0: no residual, N: the output N layers back). Without `residuals`
    (fconv_self_att), layers are (out_channels, kernel_width) only; residual is then 1."""
    spec = eval_spec(text, name)
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ConfigError(f"{setting(name, repr(text))} must be a non-empty list of layers, e.g. [(512, 3)] * 20")
    layers = []
    for index, layer in enumerate(spec):
        sizes = (2, 3) if residuals else (2,)
        if not isinstance(layer, (list, tuple)) or len(layer) not in sizes or not all(type(v) is int for v in layer):
            shape = "(out_channels, kernel_width[, residual])" if residuals else "(out_channels, kernel_width)"
            raise ConfigError(f"{setting(name, repr(text))}: layer {index} is {layer!r}, expected {shape} of ints")
        out_channels, kernel_size, residual = (*layer, 1) if len(layer) == 2 else layer
        if out_channels <= 0 or kernel_size <= 0:
            raise ConfigError(
                f"{setting(name, repr(text))}: layer {index} {layer!r} needs positive channels and kernel width"
            )
        if not 0 <= residual <= index + 1:
            # Layer i can reach back to the input of layer 0 at most: i + 1 outputs are there.
            raise ConfigError(
                f"{setting(name, repr(text))}: layer {index} {layer!r} has residual {residual}, which must be "
                f"between 0 and {index + 1} (layers back)"
            )
        layers.append((out_channels, kernel_size, residual))
    return tuple(layers)


def bool_spec(text: Any, name: str, num_layers: int) -> list[bool]:
    """A per-layer switch: True/False for every layer, or a list of one per layer (1/0 taken as True/False)."""
    spec = eval_spec(text, name)
    if isinstance(spec, bool):
        return [spec] * num_layers
    if (
        not isinstance(spec, list)
        or len(spec) != num_layers
        or not all(type(v) is bool or (type(v) is int and v in (0, 1)) for v in spec)
    ):
        raise ConfigError(
            f"{setting(name, repr(text))} must be True, False, or a list of {num_layers} booleans (one per layer)"
        )
    return [bool(v) for v in spec]


def eval_bool(text: Any, name: str) -> bool:
    """A single switch (fconv_self_att's --pretrained): True or False (1 or 0)."""
    try:
        spec = eval_spec(text, name)
    except ConfigError:
        spec = None
    if type(spec) is bool or (type(spec) is int and spec in (0, 1)):
        return bool(spec)
    raise ConfigError(f"{setting(name, repr(text))} must be True or False")
