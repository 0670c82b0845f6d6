"""SwinFusion (Ma, Tang et al., IEEE/CAA JAS 2022): a Swin Transformer fusion network with cross-domain
attention, as published for infrared-visible fusion (embed dim 60, window 8, 6 heads, MLP ratio 2).

Data flow (between blocks, tokens stay a (B, H, W, C) map; H, W padded up to a multiple of the window):

```
backbone  vis (B,in,H,W), ir (B,1,H,W) ──reflect pad──► shallow convs in→30→60 (shared by both modalities)
          ──► LayerNorm ──► 4 Swin blocks per modality (own weights) ──► LayerNorm
          ──► 2 fusion stages, each: 2 self-attention blocks per modality, then 2 cross-attention blocks
              (queries from one modality, keys/values from the other, both ways)
          ──► LayerNorm per modality ──► concat ──► conv 120→60 + LeakyReLU ──crop──► features (B,60,H,W)
decoder   features ──reflect pad──► LayerNorm ──► 4 Swin blocks ──► LayerNorm
          ──► convs 60→30→15→in (LeakyReLU between) ──► [0,1] ──crop──► fused (B,in,H,W)
```

Blocks alternate regular and shifted (shift = window // 2) windows inside every group, with a relative
position bias per block. The layout follows the authors' infrared-visible network (``network_swinfusion1``
in Linfeng-Tang/SwinFusion): no extra residual around a group of blocks (each block has its own two
residuals), no conv after a group, stochastic depth rising linearly to 0.1 within each part.

Choices where the paper is silent or our interface differs:

- Shared shallow convs with 3-channel visible input: the infrared image is replicated to ``in_chans``
  channels so both modalities pass through the very same convs, as published (a gray image in RGB is
  exactly a replicated one, so the conv sees IR as a gray visible image). This keeps one set of weights,
  adds no parameters, and with ``in_chans=1`` it is exactly the published network.
- The published model applies one LayerNorm ("patch norm") at the entry of extraction, fusion and
  reconstruction. Here the backbone and the decoder each own one (the decoder's is 120 extra
  parameters), so the two halves share no module.
- The published output is linear; here it is clamped to [0,1]. While gradients are recorded the clamp
  passes gradients straight through (as if unclamped, which is how the published losses saw it), so
  out-of-range pixels still learn; in inference it is a plain clamp.
- The published 3-channel variant subtracts a fixed RGB mean at the input and adds it back at the
  output; the first and last conv biases absorb that shift, so it is left out.
- An image too small to reflect (padding >= its size: under window/2 + 1 pixels) is replicate-padded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssvif_ros.models.base import FusionModel
from ssvif_ros.models.registry import register_model

# The additive mask value of the reference implementation: exp(-100) underflows to 0 in the softmax, yet
# stays finite in float16 (an exported engine sees no -inf).
_MASKED = -100.0

# Windows per batch item in one CPU attention chunk: 64 windows × 6 heads × 64² scores ≈ 6 MB of float32.
_CPU_WINDOWS_PER_CHUNK = 64


# ---------------------------------------------------------------------------------------------------
# Windows, masks, padding
# ---------------------------------------------------------------------------------------------------


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(B,C,H,W) -> (B,C,Hp,Wp), padded at the bottom/right up to a multiple of ``multiple``.

    Reflect padding (as in the reference); replicate where the image is too small to reflect. The input
    is returned as is when no padding is needed.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, window*window, C); windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // window) * (w // window), window * window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, window*window, C) -> (B, H, W, C)."""
    b, _, _, c = windows.shape
    x = windows.view(b, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)


@functools.lru_cache(maxsize=32)
def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for shifted windows on a (height, width) map, N = window².

    After the cyclic shift by ``-shift``, a window at the bottom/right edge holds tokens from opposite
    sides of the image; tokens from different original regions get ``-100`` (no attention), others 0.
    Cached per size and device, so every shifted block of every call reuses one tensor (never modify it).
    """
    if height % window or width % window:
        raise ValueError(f"map {height}x{width} is not a multiple of the window {window}")
    # A plain tensor even when first asked for under inference_mode, so later training calls can use it.
    with torch.inference_mode(False), torch.no_grad():
        region = torch.zeros(1, height, width, 1, device=device)
        bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        label = 0
        for rows in bounds:
            for cols in bounds:
                region[:, rows, cols, :] = label
                label += 1
        region_windows = window_partition(region, window).squeeze(-1).squeeze(0)  # (nW, N)
        differs = region_windows.unsqueeze(1) != region_windows.unsqueeze(2)
        return torch.zeros(differs.shape, device=device).masked_fill(differs, _MASKED)


def relative_position_index(window: int) -> torch.Tensor:
    """(N, N) index into a ((2·window-1)², heads) bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2), >= 0
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


# ---------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample during training, rescaling the rest."""

    def __init__(self, prob: float):
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"prob={self.prob:.3f}"


class Mlp(nn.Sequential):
    """Token-wise feed-forward: Linear(dim, hidden) -> GELU -> Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias.

    Self-attention when called with one stream; cross-attention (queries from ``x``, keys and values from
    ``context``) when given two. Windows: (B, nW, N, C) -> (B, nW, N, C).
    """

    def __init__(self, dim: int, num_heads: int, window: int, cross: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window = window
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the table."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``/``context`` (B, nW, N, C); ``mask`` (nW, N, N) additive or None -> (B, nW, N, C)."""
        b, nw, n, c = x.shape
        heads = self.num_heads
        if self.cross:
            if context is None:
                raise ValueError("a cross-attention layer needs the other modality as context")
            q = self.q(x).view(b, nw, n, heads, c // heads).transpose(2, 3)
            k, v = self.kv(context).view(b, nw, n, 2, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        else:
            q, k, v = self.qkv(x).view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        # q, k, v: (B, nW, heads, N, d)
        bias = self.position_bias()
        if mask is not None:
            bias = bias.unsqueeze(0) + mask.unsqueeze(1).to(bias.dtype)  # (nW, heads, N, N)
        out = attend(q, k, v, bias)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, use_sdpa: bool | None = None
) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v per window and head.

    ``q``, ``k``, ``v`` (B, nW, heads, N, d); ``bias`` (heads, N, N) or (nW, heads, N, N)
    -> (B, nW, heads, N, d). ``use_sdpa`` forces one of the two equivalent forms (None: by device):

    - CPU: explicit matmul-softmax-matmul, over chunks of windows so the (·, heads, N, N) scores stay in
      cache (about 25 % faster than SDPA's CPU fallback at 128², 35 % more at 256² from the chunking).
    - Elsewhere: SDPA, which may pick a fused kernel (windows folded into the head axis: 4-D inputs).
    """
    if use_sdpa is None:
        use_sdpa = q.device.type != "cpu"
    if use_sdpa:
        b, nw, heads, n, d = q.shape
        bias = bias.expand(nw, heads, n, n).reshape(nw * heads, n, n)
        out = F.scaled_dot_product_attention(
            q.reshape(b, nw * heads, n, d),
            k.reshape(b, nw * heads, n, d),
            v.reshape(b, nw * heads, n, d),
            attn_mask=bias,
        )
        return out.view(b, nw, heads, n, d)
    num_windows = q.shape[1]
    chunk = max(1, _CPU_WINDOWS_PER_CHUNK // q.shape[0])
    if num_windows <= chunk or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _explicit_attention(q, k, v, bias)
    chunks = []
    for start in range(0, num_windows, chunk):
        part = slice(start, start + chunk)
        chunk_bias = bias[part] if bias.dim() == 4 else bias
        chunks.append(_explicit_attention(q[:, part], k[:, part], v[:, part], chunk_bias))
    return torch.cat(chunks, dim=1)


def _explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    attn += bias
    return attn.softmax(dim=-1) @ v


class SwinBlock(nn.Module):
    """Pre-norm Swin Transformer block on a (B, H, W, C) map: (shifted) window attention + MLP."""

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float = 0.0
    ):
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift {shift} must lie in [0, window {window})")
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, H, W, C) with H, W multiples of the window; ``shift_mask`` from
        :func:`shifted_window_mask` (used by shifted blocks only) -> (B, H, W, C)."""
        _, h, w, _ = x.shape
        shifted = _roll(self.norm1(x), -self.shift)
        attended = self.attn(window_partition(shifted, self.window), mask=self._mask(shift_mask))
        x = x + self.drop_path(_roll(window_merge(attended, self.window, h, w), self.shift))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _mask(self, shift_mask: torch.Tensor | None) -> torch.Tensor | None:
        if self.shift == 0:
            return None
        if shift_mask is None:
            raise ValueError("a shifted-window block needs the shift mask")
        return shift_mask


class CrossSwinBlock(nn.Module):
    """Two-stream Swin block: each modality attends to the other inside (shifted) windows.

    ``a`` queries ``b``'s keys/values and vice versa, with separate weights per direction; each stream then
    has its own residual and MLP. (B, H, W, C) ×2 -> (B, H, W, C) ×2.
    """

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float = 0.0
    ):
        super().__init__()
        self.window = window
        self.shift = shift
        hidden = int(dim * mlp_ratio)
        self.norm1_a, self.norm1_b = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_a = WindowAttention(dim, num_heads, window, cross=True)
        self.attn_b = WindowAttention(dim, num_heads, window, cross=True)
        self.norm2_a, self.norm2_b = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_a, self.mlp_b = Mlp(dim, hidden), Mlp(dim, hidden)
        self.drop_path = DropPath(drop_path)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, shift_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, h, w, _ = a.shape
        mask = None if self.shift == 0 else shift_mask
        if self.shift and mask is None:
            raise ValueError("a shifted-window block needs the shift mask")
        win_a = window_partition(_roll(self.norm1_a(a), -self.shift), self.window)
        win_b = window_partition(_roll(self.norm1_b(b), -self.shift), self.window)
        att_a = self.attn_a(win_a, context=win_b, mask=mask)
        att_b = self.attn_b(win_b, context=win_a, mask=mask)
        a = a + self.drop_path(_roll(window_merge(att_a, self.window, h, w), self.shift))
        b = b + self.drop_path(_roll(window_merge(att_b, self.window, h, w), self.shift))
        a = a + self.drop_path(self.mlp_a(self.norm2_a(a)))
        b = b + self.drop_path(self.mlp_b(self.norm2_b(b)))
        return a, b


def _roll(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Cyclic shift of a (B, H, W, C) map along H and W (no-op for 0)."""
    return torch.roll(x, shifts=(shift, shift), dims=(1, 2)) if shift else x


class SwinGroup(nn.Module):
    """``depth`` Swin blocks alternating regular and shifted windows: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, drop_path: Sequence[float]
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_path[i])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, shift_mask)
        return x


class FusionStage(nn.Module):
    """One SwinFusion fusion stage: intra-domain (self-attention per modality), then inter-domain
    (cross-attention both ways), ``depth`` blocks each, alternating regular/shifted windows."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, drop_path: Sequence[float]
    ):
        super().__init__()
        self.intra_a = SwinGroup(dim, depth, num_heads, window, mlp_ratio, drop_path)
        self.intra_b = SwinGroup(dim, depth, num_heads, window, mlp_ratio, drop_path)
        self.inter = nn.ModuleList(
            CrossSwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_path[i])
            for i in range(depth)
        )

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, shift_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.intra_a(a, shift_mask)
        b = self.intra_b(b, shift_mask)
        for block in self.inter:
            a, b = block(a, b, shift_mask)
        return a, b


def _stochastic_depth(depths: Sequence[int], rate: float) -> list[float]:
    """Per-block drop-path rates rising linearly from 0 to ``rate`` over the blocks of one part."""
    return torch.linspace(0.0, rate, sum(depths)).tolist() if sum(depths) else []


# ---------------------------------------------------------------------------------------------------
# Backbone and decoder
# ---------------------------------------------------------------------------------------------------


class SwinFusionBackbone(nn.Module):
    """Shallow convs, per-modality Swin extraction, cross-domain fusion, conv 2C→C.

    ``forward(vis (B,in_chans,H,W), ir (B,1,H,W)) -> features (B, embed_dim, H, W)`` for any H, W
    (reflect-padded to the window internally, cropped back).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        extraction_depth: int,
        fusion_depths: Sequence[int],
        extraction_heads: int,
        fusion_heads: Sequence[int],
        window_size: int,
        mlp_ratio: float,
        drop_path_rate: float,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.window_size = window_size
        half = embed_dim // 2
        # Shared by both modalities (IR is replicated to in_chans channels).
        self.shallow = nn.Sequential(
            nn.Conv2d(in_chans, half, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(half, embed_dim, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.embed_norm = nn.LayerNorm(embed_dim)  # shared entry norm of extraction and fusion
        dpr = _stochastic_depth([extraction_depth], drop_path_rate)
        args = (embed_dim, extraction_depth, extraction_heads, window_size, mlp_ratio, dpr)
        self.extract_vis, self.extract_ir = SwinGroup(*args), SwinGroup(*args)
        self.extract_norm_vis, self.extract_norm_ir = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        dpr = _stochastic_depth(fusion_depths, drop_path_rate)
        self.fusion_stages = nn.ModuleList()
        start = 0
        for depth, heads in zip(fusion_depths, fusion_heads, strict=True):
            stage_dpr = dpr[start : start + depth]
            self.fusion_stages.append(FusionStage(embed_dim, depth, heads, window_size, mlp_ratio, stage_dpr))
            start += depth
        self.fusion_norm_vis, self.fusion_norm_ir = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.fuse = nn.Sequential(nn.Conv2d(2 * embed_dim, embed_dim, 3, padding=1), nn.LeakyReLU(0.2))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        height, width = vis.shape[-2:]
        vis = pad_to_multiple(vis, self.window_size)
        ir = pad_to_multiple(ir, self.window_size)
        if ir.shape[1] != self.in_chans:
            ir = ir.expand(-1, self.in_chans, -1, -1)
        padded_h, padded_w = vis.shape[-2:]
        mask = shifted_window_mask(padded_h, padded_w, self.window_size, self.window_size // 2, vis.device)

        # Both modalities through the same shallow convs, in one batch.
        shallow = self.shallow(torch.cat([vis, ir], dim=0)).permute(0, 2, 3, 1)  # (2B, Hp, Wp, C)
        tokens_vis, tokens_ir = self.embed_norm(shallow).chunk(2, dim=0)
        a = self.extract_norm_vis(self.extract_vis(tokens_vis, mask))
        b = self.extract_norm_ir(self.extract_ir(tokens_ir, mask))

        a, b = self.embed_norm(a), self.embed_norm(b)
        for stage in self.fusion_stages:
            a, b = stage(a, b, mask)
        fused = torch.cat([self.fusion_norm_vis(a), self.fusion_norm_ir(b)], dim=-1).permute(0, 3, 1, 2)
        return self.fuse(fused)[..., :height, :width]


class SwinFusionDecoder(nn.Module):
    """Swin reconstruction + convs C→C/2→C/4→out_chans, output in [0,1].

    ``forward(features (B, C, H, W), vis, ir) -> fused (B, out_chans, H, W)``; the sources are unused.
    """

    def __init__(
        self,
        out_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path_rate: float,
    ):
        super().__init__()
        self.window_size = window_size
        self.embed_norm = nn.LayerNorm(embed_dim)
        dpr = _stochastic_depth([depth], drop_path_rate)
        self.reconstruct = SwinGroup(embed_dim, depth, num_heads, window_size, mlp_ratio, dpr)
        self.norm = nn.LayerNorm(embed_dim)
        half, quarter = embed_dim // 2, embed_dim // 4
        self.to_image = nn.Sequential(
            nn.Conv2d(embed_dim, half, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(half, quarter, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(quarter, out_chans, 3, padding=1),
        )

    def forward(self, features: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        height, width = features.shape[-2:]
        x = pad_to_multiple(features, self.window_size)
        mask = shifted_window_mask(*x.shape[-2:], self.window_size, self.window_size // 2, x.device)
        x = self.embed_norm(x.permute(0, 2, 3, 1))
        x = self.norm(self.reconstruct(x, mask)).permute(0, 3, 1, 2)
        image = self.to_image(x)[..., :height, :width]
        return _clamp_unit(image)


def _clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0,1]; when recording gradients, the gradient passes straight through the clamp."""
    clamped = x.clamp(0.0, 1.0)
    if torch.is_grad_enabled() and x.requires_grad:
        return x + (clamped - x).detach()
    return clamped


def _init_weights(module: nn.Module) -> None:
    # Reference init: truncated-normal linear layers with zero bias, unit LayerNorms, default convs.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@register_model
def swinfusion(
    in_chans: int = 3,
    embed_dim: int = 60,
    depths: Sequence[int] = (4, 2, 2, 4),
    num_heads: int | Sequence[int] = 6,
    window_size: int = 8,
    mlp_ratio: float = 2.0,
    drop_path_rate: float = 0.1,
) -> FusionModel:
    """SwinFusion with the published infrared-visible configuration by default (≈0.97 M parameters).

    ``depths``: (extraction blocks per modality, then per fusion stage the number of self-attention
    blocks per modality = cross-attention blocks, ..., reconstruction blocks); ``num_heads``: one value
    or one per entry of ``depths``. Features: (B, embed_dim, H, W), the fused map after the 2C→C conv.
    """
    depths = [int(d) for d in depths]
    if len(depths) < 3:
        raise ValueError(
            f"swinfusion depths needs (extraction, fusion stage..., reconstruction), got {depths}"
        )
    heads = [int(num_heads)] * len(depths) if isinstance(num_heads, int) else [int(h) for h in num_heads]
    if len(heads) != len(depths):
        raise ValueError(f"swinfusion num_heads {list(heads)} must match depths {depths} in length")
    if window_size < 2 or embed_dim % 4:
        raise ValueError(
            f"swinfusion needs window_size >= 2 and embed_dim divisible by 4, got {window_size}, {embed_dim}"
        )
    backbone = SwinFusionBackbone(
        in_chans,
        embed_dim,
        extraction_depth=depths[0],
        fusion_depths=depths[1:-1],
        extraction_heads=heads[0],
        fusion_heads=heads[1:-1],
        window_size=window_size,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
    )
    decoder = SwinFusionDecoder(
        in_chans, embed_dim, depths[-1], heads[-1], window_size, mlp_ratio, drop_path_rate
    )
    model = FusionModel(backbone, decoder, in_chans=in_chans, feature_channels=embed_dim)
    model.apply(_init_weights)
    return model
