"""Criss-cross attention (CCNet, Huang et al. 2019), pure PyTorch, any device, TorchScript-scriptable."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["CrissCrossAttention", "criss_cross_attention", "criss_cross_softmax"]


class CrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention (RCCA) with a residual connection.

    One pass: every pixel ``(h, w)`` attends to the ``H + W - 1`` positions of its criss-cross, i.e. its whole row
    (itself included) and its column without itself, with one softmax over all of them::

        q, k = Conv1x1(C -> C'), Conv1x1(C -> C')    C' = max(1, C // reduction)
        v    = Conv1x1(C -> C)
        y    = gamma * sum_{u in cross(h, w)} softmax_u(q[:, h, w] . k[:, u]) v[:, u] + x

    ``gamma`` starts at 0, so the module is the identity at initialisation. ``recurrence`` applies the same pass
    (shared weights) that many times; with 2 passes every pixel reaches every other pixel.

    Energies, softmax and aggregation run in float32, also under autocast (the attention output is cast back to
    the dtype of the values). See :func:`criss_cross_attention` for the implementation.

    Args:
        in_channels: C of the ``(B, C, H, W)`` input; any H, W >= 1. The output has the input's shape.
        reduction: channel reduction of query and key.
        recurrence: number of passes R >= 1.

    Memory: a full attention map has ``B * H * W * (H + W)`` entries per pass (vs ``B * (H * W) ** 2`` for a
    non-local block); in eager mode it is computed in chunks and not kept for backward.
    """

    def __init__(self, in_channels: int, reduction: int = 8, recurrence: int = 2) -> None:
        super().__init__()
        if in_channels < 1 or reduction < 1:
            raise ValueError(f"in_channels and reduction must be >= 1, got {in_channels} and {reduction}.")
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence}.")
        qk_channels = max(1, in_channels // reduction)
        self.in_channels = in_channels
        self.recurrence = recurrence
        self.query = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.key = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.value = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            value = self.value(x)
            out = criss_cross_attention(self.query(x), self.key(x), value)
            x = self.gamma * out.to(value.dtype) + x
        return x


def criss_cross_softmax(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Criss-cross attention weights in float32 (plain autograd ops; for inspection and TorchScript).

    Args:
        query, key: ``(B, C', H, W)``.

    Returns:
        ``(B, H, W, H + W)`` float32: entry ``[b, h, w, i]`` for ``i < H`` weighs column position ``(i, w)`` (zero at
        ``i == h``), entry ``[b, h, w, H + j]`` weighs row position ``(h, j)``. Each ``[b, h, w]`` slice sums to 1
        over exactly ``H + W - 1`` non-zero entries.
    """
    query, key = query.float(), key.float()
    height = query.shape[2]
    energy_col = torch.einsum("bchw,bciw->bhwi", query, key)
    # The pixel itself is counted once, in its row; every row keeps W finite logits, so no softmax row is all -inf.
    self_mask = torch.eye(height, dtype=torch.bool, device=query.device).view(1, height, 1, height)
    energy_col = energy_col.masked_fill(self_mask, float("-inf"))
    energy_row = torch.einsum("bchw,bchj->bhwj", query, key)
    return torch.softmax(torch.cat([energy_col, energy_row], dim=3), dim=3)


def criss_cross_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Criss-cross aggregation ``out[:, :, h, w] = sum_{u in cross(h, w)} A[h, w, u] value[:, :, u]`` (no gamma, no
    residual), computed in float32.

    Args:
        query, key: ``(B, C', H, W)``; value: ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)`` float32.

    Eager mode uses a memory-efficient autograd function: the attention map is computed block by block (the
    column block holds one H x H matrix per image column, the row block one W x W matrix per image row), never
    stored for backward (only the per-pixel log-sum-exp is) and recomputed in the backward pass, in chunks small
    enough to stay in cache on CPU. Peak memory is O(chunk) instead of O(B H W (H + W)) per pass, and on CPU it is
    about twice as fast as plain autograd. It does not support double backward. TorchScript uses the plain-autograd
    formulation (:func:`criss_cross_softmax`, same values).
    """
    if torch.jit.is_scripting():
        attention = criss_cross_softmax(query, key)
        height = query.shape[2]
        value = value.float()
        return torch.einsum("bciw,bhwi->bchw", value, attention[..., :height]) + torch.einsum(
            "bchj,bhwj->bchw", value, attention[..., height:]
        )
    return _criss_cross_attention_eager(query, key, value)


@torch.jit.unused
def _criss_cross_attention_eager(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    with _autocast_off(query.device.type):
        return _CrissCrossFunction.apply(query.float(), key.float(), value.float())


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    # autocast would run the matmuls in reduced precision even on float32 inputs
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


# Energies per chunk: on CPU two chunk buffers (energies and their gradient) stay in the L2 cache; elsewhere a
# block is usually one chunk (fewer kernel launches).
_CPU_CHUNK_ELEMENTS = 1 << 18
_CHUNK_ELEMENTS = 1 << 26


def _tuned_for_cpu(device: torch.device) -> bool:
    return device.type == "cpu"


def _to_cols(t: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> contiguous ``(B*W, C, H)``: one ``C x H`` matrix per image column."""
    b, c, h, w = t.shape
    if not _tuned_for_cpu(t.device):
        return t.permute(0, 3, 1, 2).contiguous().view(b * w, c, h)
    out = t.new_empty(b, w, c * h)
    for i in range(b):  # a 2-D transpose per image takes ATen's blocked fast path; a 4-D permute does not
        out[i].copy_(t[i].reshape(c * h, w).t())
    return out.view(b * w, c, h)


def _to_rows(t: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> contiguous ``(B*H, C, W)``: one ``C x W`` matrix per image row."""
    b, c, h, w = t.shape
    # contiguous: CPU bmm falls back to one matmul per matrix on other batch strides
    return t.transpose(1, 2).contiguous().view(b * h, c, w)


def _from_cols_and_rows(cols: torch.Tensor, rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum of a per-column ``(B*W, C, H)`` and a per-row ``(B*H, C, W)`` result as one ``(B, C, H, W)`` tensor."""
    b, c, h, w = shape
    if not _tuned_for_cpu(cols.device):
        out = cols.view(b, w, c, h).permute(0, 2, 3, 1).contiguous()
    else:
        src = cols.view(b, w, c * h)
        out = cols.new_empty(b, c * h, w)
        for i in range(b):
            out[i].copy_(src[i].t())
        out = out.view(b, c, h, w)
    return out.add_(rows.view(b, h, c, w).transpose(1, 2))


def _chunks(n: int, length: int, device: torch.device) -> list[tuple[int, int]]:
    budget = _CPU_CHUNK_ELEMENTS if _tuned_for_cpu(device) else _CHUNK_ELEMENTS
    step = max(1, budget // (length * length))
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def _energies(
    query: torch.Tensor, key: torch.Tensor, start: int, stop: int, exclude_self: bool, buffer: torch.Tensor
) -> torch.Tensor:
    """``energy[m, l, l'] = query[m, :, l] . key[m, :, l']`` for matrices ``start:stop`` of a block, into ``buffer``."""
    energy = buffer[: stop - start]
    torch.bmm(query[start:stop].transpose(1, 2), key[start:stop], out=energy)
    if exclude_self:  # column block: the pixel itself is counted once, in its row block
        energy.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
    return energy


def _block_forward(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block (n matrices of size L) with a softmax of its own: per-position max ``(n, L)``, sum of
    ``exp(energy - max)`` ``(n, L)`` and the value aggregated with those unnormalised weights ``(n, C, L)``."""
    n, channels, length = value.shape
    peak = query.new_empty(n, length)
    total = query.new_empty(n, length)
    out = value.new_empty(n, channels, length)
    chunks = _chunks(n, length, query.device)
    buffer = query.new_empty(chunks[0][1] - chunks[0][0], length, length)
    lowest = torch.finfo(query.dtype).min  # an all -inf row (H == 1 column block) must give exp(-inf) = 0, not NaN
    for start, stop in chunks:
        weights = _energies(query, key, start, stop, exclude_self, buffer)
        chunk_peak = weights.amax(2).clamp_min_(lowest)
        peak[start:stop] = chunk_peak
        weights.sub_(chunk_peak.unsqueeze(2)).exp_()
        torch.sum(weights, 2, out=total[start:stop])
        torch.bmm(value[start:stop], weights.transpose(1, 2), out=out[start:stop])
    return peak, total, out


def _block_backward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    grad: torch.Tensor,
    log_normaliser: torch.Tensor,
    dot: torch.Tensor,
    exclude_self: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of one block: recompute ``A = exp(energy - lse)``, then ``dV = G A`` and, with the softmax
    backward ``dE = A * (G^T V - dot)``, ``dQ = K dE^T`` and ``dK = Q dE``."""
    n, channels, length = value.shape
    grad_query, grad_key = torch.empty_like(query), torch.empty_like(key)
    grad_value = value.new_empty(n, channels, length)
    chunks = _chunks(n, length, query.device)
    size = chunks[0][1] - chunks[0][0]
    attention_buffer = query.new_empty(size, length, length)
    energy_grad_buffer = query.new_empty(size, length, length)
    for start, stop in chunks:
        attention = _energies(query, key, start, stop, exclude_self, attention_buffer)
        attention.sub_(log_normaliser[start:stop].unsqueeze(2)).exp_()
        torch.bmm(grad[start:stop], attention, out=grad_value[start:stop])
        energy_grad = energy_grad_buffer[: stop - start]
        torch.bmm(grad[start:stop].transpose(1, 2), value[start:stop], out=energy_grad)
        energy_grad.sub_(dot[start:stop].unsqueeze(2)).mul_(attention)
        torch.bmm(key[start:stop], energy_grad.transpose(1, 2), out=grad_query[start:stop])
        torch.bmm(query[start:stop], energy_grad, out=grad_key[start:stop])
    return grad_query, grad_key, grad_value


class _CrissCrossFunction(torch.autograd.Function):
    """Criss-cross aggregation; the column and row blocks share one softmax per pixel, merged log-sum-exp style."""

    @staticmethod
    def forward(ctx: FunctionCtx, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, _, h, w = query.shape
        cols = _to_cols(query), _to_cols(key), _to_cols(value)
        rows = _to_rows(query), _to_rows(key), _to_rows(value)
        col_peak, col_total, col_out = _block_forward(*cols, exclude_self=True)
        row_peak, row_total, row_out = _block_forward(*rows, exclude_self=False)
        col_peak, col_total = col_peak.view(b, w, h).transpose(1, 2), col_total.view(b, w, h).transpose(1, 2)
        row_peak, row_total = row_peak.view(b, h, w), row_total.view(b, h, w)
        peak = torch.maximum(col_peak, row_peak)  # (B, H, W)
        col_scale, row_scale = (col_peak - peak).exp_(), (row_peak - peak).exp_()
        total = col_total * col_scale + row_total * row_scale  # >= 1: the block holding the peak contributes exp(0)
        col_out.mul_((col_scale / total).transpose(1, 2).reshape(b * w, 1, h))
        row_out.mul_((row_scale / total).reshape(b * h, 1, w))
        out = _from_cols_and_rows(col_out, row_out, value.shape)
        # the layouts are kept (a few feature maps) rather than the attention map (H + W of them)
        ctx.save_for_backward(*cols, *rows, peak + total.log(), out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *layouts, log_normaliser, out = ctx.saved_tensors  # type: ignore[attr-defined]
        cols, rows = layouts[:3], layouts[3:]
        b, c, h, w = out.shape
        with _autocast_off(out.device.type):
            grad_out = grad_out.to(out.dtype)
            # softmax backward needs sum_u A_u dA_u per pixel, which equals sum_c grad_out * out
            dot = (grad_out * out).sum(1)
            col_grads = _block_backward(
                *cols,
                _to_cols(grad_out),
                log_normaliser.transpose(1, 2).reshape(b * w, h),
                dot.transpose(1, 2).reshape(b * w, h),
                exclude_self=True,
            )
            row_grads = _block_backward(
                *rows,
                _to_rows(grad_out),
                log_normaliser.reshape(b * h, w),
                dot.reshape(b * h, w),
                exclude_self=False,
            )
            qk_shape = torch.Size((b, cols[0].shape[1], h, w))
            grad_query, grad_key, grad_value = (
                _from_cols_and_rows(col, row, shape)
                for col, row, shape in zip(col_grads, row_grads, (qk_shape, qk_shape, out.shape))
            )
        return grad_query, grad_key, grad_value
