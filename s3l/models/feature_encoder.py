"""Front ends: raw 16 kHz waveform -> 50 Hz features (B, C, T) and their valid lengths.

:class:`FeatureEncoder` is the convolutional feature encoder of wav2vec 2.0 §2 and HuBERT (every paper preset).
:class:`LogMelFrontEnd` is the alternative of the CPU ``tiny`` preset: log-mel filterbanks, no weights (as
MelHuBERT, arXiv 2211.09944 §3), framed exactly like the conv stack (400-sample window, 320-sample hop), so every
frame count, label rate and frame time stays the same.

Seven blocks of Conv1d (no padding) -> normalisation -> GELU. ``group_norm`` mode (BASE) normalises each channel
over time in the first block only; ``layer_norm`` mode (LARGE) normalises over channels in every block.

Padding invariance: the time-wise GroupNorm of ``group_norm`` mode takes its statistics over each utterance's
valid frames only, so a padded batch gives the same features for the real frames as each utterance alone
(fairseq includes the padded frames in the statistics; the two agree whenever there is no padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s3l.audio import SAMPLE_RATE
from s3l.models.config import CONV_KERNELS, CONV_STRIDES


def conv_output_length(num_samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames a stack of unpadded convolutions yields for ``num_samples`` inputs (0 if too short)."""
    n = num_samples
    for k, s in zip(kernels, strides):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def encoder_frames(num_samples: int) -> int:
    """Number of 50 Hz frames the wav2vec 2.0 / HuBERT feature encoder yields for ``num_samples`` samples."""
    return conv_output_length(num_samples, CONV_KERNELS, CONV_STRIDES)


def conv_output_lengths(lengths: torch.Tensor, kernels: tuple[int, ...], strides: tuple[int, ...]) -> torch.Tensor:
    """Vectorised :func:`conv_output_length` for a (B,) tensor of sample counts."""
    n = lengths.long()
    for k, s in zip(kernels, strides):
        n = torch.where(n >= k, torch.div(n - k, s, rounding_mode="floor") + 1, torch.zeros_like(n))
    return n


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm with one group per channel (per-channel normalisation over time), statistics from valid frames."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, eps=1e-5, affine=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:  # x: (B, C, T)
        dtype = x.dtype
        x = x.float()
        if lengths is None or bool((lengths >= x.size(2)).all()):  # no padding: plain GroupNorm
            y = F.group_norm(x, self.num_groups, self.weight.float(), self.bias.float(), self.eps)
            return y.to(dtype)
        valid = length_mask(lengths, x.size(2)).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        count = valid.sum(2, keepdim=True).clamp(min=1.0)
        mean = (x * valid).sum(2, keepdim=True) / count
        var = ((x - mean).pow(2) * valid).sum(2, keepdim=True) / count
        y = (x - mean) * torch.rsqrt(var + self.eps)
        y = y * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]
        return y.to(dtype)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor, computed in fp32."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:  # x: (B, C, T)
        y = F.layer_norm(x.transpose(1, 2).float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                         self.eps)
        return y.transpose(1, 2).to(x.dtype)


class ConvBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, norm: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm: nn.Module | None
        if norm == "group_norm":
            self.norm = MaskedGroupNorm(out_dim)
        elif norm == "layer_norm":
            self.norm = ChannelLayerNorm(out_dim)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:  # (B, C_in, T) -> (B, C, T')
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, lengths)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Waveform (B, S) -> features (B, C, T) and their valid lengths."""

    def __init__(
        self,
        conv_dim: int,
        kernels: tuple[int, ...] = CONV_KERNELS,
        strides: tuple[int, ...] = CONV_STRIDES,
        mode: str = "group_norm",
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernels = tuple(kernels)
        self.strides = tuple(strides)
        blocks = []
        in_dim = 1
        for i, (k, s) in enumerate(zip(kernels, strides)):
            norm = "layer_norm" if mode == "layer_norm" else ("group_norm" if i == 0 else None)
            blocks.append(ConvBlock(in_dim, conv_dim, k, s, conv_bias, norm))
            in_dim = conv_dim
        self.conv_layers = nn.ModuleList(blocks)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.kernels, self.strides)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) float -> ((B, C, T) features, (B,) valid frame counts)."""
        x = wave.unsqueeze(1)  # (B, 1, S)
        n = lengths
        for k, s, block in zip(self.kernels, self.strides, self.conv_layers):
            if n is not None:
                n = torch.where(n >= k, torch.div(n - k, s, rounding_mode="floor") + 1, torch.zeros_like(n))
            x = block(x, n)
        if n is None:
            n = torch.full((x.size(0),), x.size(2), dtype=torch.long, device=x.device)
        return x, n


MEL_WINDOW = 400  # samples (25 ms): the conv stack's receptive field
MEL_HOP = 320  # samples (20 ms): its total stride
MEL_FLOOR = 1e-6  # added to the power before the log


class LogMelFrontEnd(nn.Module):
    """Waveform (B, S) -> log-mel power (B, n_mels, T), T = encoder_frames(S); frames past a length are zero.

    Hann window of 400 samples, one frame every 320 (no centring, so frame t covers samples [320 t, 320 t + 400),
    as the conv stack's frame t does), |rFFT|^2, HTK mel filters from 0 to 8 kHz, log(x + 1e-6). Computed in fp32
    under autocast. The window and filters are non-persistent buffers: checkpoints hold weights only, the config
    describes the front end.
    """

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        with torch.device("cpu"):  # real tensors even when the model is built on the meta device (load_model)
            window = torch.hann_window(MEL_WINDOW)
            fbanks = melscale_fbanks(MEL_WINDOW // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("fbanks", fbanks, persistent=False)  # (freqs, n_mels)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, (MEL_WINDOW,), (MEL_HOP,))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) float -> ((B, n_mels, T) log-mel features, (B,) valid frame counts)."""
        with torch.autocast(wave.device.type, enabled=False):
            frames = wave.float().unfold(1, MEL_WINDOW, MEL_HOP) * self.window  # (B, T, 400)
            power = torch.fft.rfft(frames, dim=-1).abs().pow(2)  # (B, T, 201)
            x = torch.log(power @ self.fbanks + MEL_FLOOR).transpose(1, 2)  # (B, n_mels, T)
        if lengths is None:
            return x, torch.full((x.size(0),), x.size(2), dtype=torch.long, device=x.device)
        n = self.output_lengths(lengths)
        return x * length_mask(n, x.size(2)).unsqueeze(1).to(x.dtype), n


def normalize_waveform(wave: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its first ``lengths[i]`` samples; padding stays zero."""
    valid = length_mask(lengths, wave.size(1)).to(torch.float32)  # (B, S)
    x = wave.float()
    count = valid.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * valid).sum(1, keepdim=True) / count
    var = ((x - mean).pow(2) * valid).sum(1, keepdim=True) / count
    return ((x - mean) * torch.rsqrt(var + eps) * valid).to(wave.dtype)


class GradMultiply(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` backward (fairseq feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None
