"""Helpers every converter shares: key renaming tables, safe literal parsing, building an s3l model from weights.

s3l's parameter names follow fairseq (``self_attn.q_proj``, ``fc1``, ``final_layer_norm``, ...), so every format is
a table of ``(regex, replacement)`` rules over the source's state-dict keys; :func:`rename_keys` applies one and
refuses a checkpoint with a key no rule covers (a different architecture, not something to skip silently).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from s3l.errors import S3LError
from s3l.models.config import ModelConfig

# (regex matched against the whole key, replacement template for re.Match.expand, or None to drop the key)
Rule = tuple[str, str | None]

POS_CONV = "backbone.encoder.pos_conv.conv"
WEIGHT_G = f"{POS_CONV}.parametrizations.weight.original0"  # (1, 1, K): one norm per kernel tap (dim=2)
WEIGHT_V = f"{POS_CONV}.parametrizations.weight.original1"  # (D, D / groups, K)

# Weights of each s3l model kind that are not part of the shared backbone (pre-training / CTC heads).
HEADS = {
    "wav2vec2": ("quantizer.", "project_q.", "final_proj."),
    "hubert": ("final_proj.", "label_embs_concat"),
    "ctc": ("proj.",),
}


def compile_rules(rules: Sequence[Rule]) -> list[tuple[re.Pattern[str], str | None]]:
    return [(re.compile(p), r) for p, r in rules]


def rename_keys(
    state: dict[str, torch.Tensor], rules: Sequence[tuple[re.Pattern[str], str | None]], where: str, what: str
) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule whose regex matches it entirely; a key no rule matches is an error."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        for pattern, repl in rules:
            m = pattern.fullmatch(key)
            if m:
                if repl is not None:
                    out[m.expand(repl)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise S3LError(f"{where}: unexpected weight {unknown[0]!r}{more}: not a {what} that s3l can convert")
    return out


def float_tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, detached (no pickled hooks), floating point ones in fp32 (fairseq fp16 checkpoints)."""
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            out[k] = v.float() if v.is_floating_point() else v
    return out


def safe_literal(text: Any, where: str, field: str) -> Any:
    """Evaluate a config string such as ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"`` or ``"(2, 0.5, 0.999995)"``.

    Only numbers, strings, lists, tuples and ``+`` / ``*`` between them are allowed; nothing is executed.
    """
    if not isinstance(text, str):
        return text

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Mult) and isinstance(a, (list, tuple)) and isinstance(b, int) and b > 10_000:
                raise ValueError("repetition too large")
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported syntax {type(node).__name__}")

    try:
        return ev(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError) as e:
        raise S3LError(f"{where}: cannot read config field {field}={text!r} ({e})") from None


def conv_layers(spec: Any, where: str) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """fairseq ``conv_feature_layers`` ([(dim, kernel, stride), ...]) -> (dim, kernels, strides); equal dims only."""
    layers = safe_literal(spec, where, "conv_feature_layers")
    try:
        dims, kernels, strides = zip(*[(int(d), int(k), int(s)) for d, k, s in layers])
    except (TypeError, ValueError):
        raise S3LError(f"{where}: conv_feature_layers must be a list of (dim, kernel, stride), got {spec!r}") from None
    return uniform_conv(list(dims), list(kernels), list(strides), where)


def uniform_conv(
    dims: list[int], kernels: list[int], strides: list[int], where: str
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    if not (len(dims) == len(kernels) == len(strides) > 0):
        raise S3LError(f"{where}: conv dims, kernels and strides differ in length")
    if len(set(dims)) != 1:
        raise S3LError(f"{where}: conv layers of different widths {dims} are not supported (s3l uses one conv_dim)")
    return int(dims[0]), tuple(int(k) for k in kernels), tuple(int(s) for s in strides)


def drop_identity_projection(state: dict[str, torch.Tensor], cfg: ModelConfig, where: str) -> None:
    """s3l (like fairseq) has no feature projection when conv_dim == encoder_embed_dim; HF and torchaudio always
    have one. Drop it from ``state`` (s3l names) if it is the identity, refuse otherwise."""
    if cfg.conv_dim != cfg.encoder_embed_dim or "backbone.post_extract_proj.weight" not in state:
        return
    w = state.pop("backbone.post_extract_proj.weight")
    b = state.pop("backbone.post_extract_proj.bias", None)
    require(torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype)) and (b is None or not b.any()), where,
            "conv_dim equals the model dimension but the feature projection is not the identity: s3l (like "
            "fairseq) has no projection for this shape")


def require(ok: bool, where: str, msg: str) -> None:
    if not ok:
        raise S3LError(f"{where}: {msg}")


def make_config(where: str, **fields: Any) -> ModelConfig:
    """A ModelConfig; an invalid combination becomes an S3LError naming the source."""
    try:
        return ModelConfig(**fields)
    except S3LError as e:
        raise S3LError(f"{where}: {e}") from None


def build_model(
    kind: str,
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    where: str,
    *,
    num_classes: list[int] | None = None,
    vocab: list[str] | None = None,
    fresh: Sequence[str] = (),
) -> nn.Module:
    """An s3l model of ``kind`` holding ``state`` (s3l key names), in eval mode.

    Every weight must be present except those under the prefixes ``fresh`` (heads the source format does not
    have): those are freshly initialised and a warning names them. Shapes must match exactly.
    """
    try:
        with torch.device("meta"):
            model = _new_model(kind, cfg, num_classes, vocab)
    except S3LError as e:
        raise S3LError(f"{where}: {e}") from None
    expected = model.state_dict().keys()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise S3LError(f"{where}: weight {unexpected[0]!r} has no place in the s3l {kind} model")
    missing = sorted(set(expected) - set(state))
    absent = [k for k in missing if not k.startswith(tuple(fresh))]
    if absent:
        raise S3LError(f"{where}: weight {absent[0]!r} is missing")
    if missing:  # build for real so the heads get their usual initialisation
        model = _new_model(kind, cfg, num_classes, vocab)
        parts = sorted({k if k.startswith("backbone.") else k.split(".")[0] for k in missing})
        warnings.warn(f"{where}: the checkpoint has no {', '.join(parts)} weights; they are freshly initialised",
                      stacklevel=3)
    try:
        model.load_state_dict(state, strict=not missing, assign=not missing)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise S3LError(f"{where}: weights do not fit the s3l {kind} model ({detail})") from None
    return model.eval()


def _new_model(kind: str, cfg: ModelConfig, num_classes: list[int] | None, vocab: list[str] | None) -> nn.Module:
    from s3l.models.objectives import KINDS
    from s3l.models.objectives import build_model as new

    return new(kind, cfg, {"num_classes": num_classes, "vocab": vocab}.get(KINDS[kind].extra or ""))
