"""The transformer block of the self-attentive models, with a cache-friendly inference path.

Pre-LayerNorm self-attention followed by a feed-forward block, the layout of the SASRec
reference code (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018); the
GELU and the wider inner layer are deviations that :mod:`seqrec.models.sasrec` lists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Rows per feed-forward tile at inference on CPU: the [rows, 4H] inner activation of a tile
# stays in cache between its matrix products and the GELU instead of going to memory.
FFN_TILE_ROWS = 512


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention block (the layout of the SASRec reference code)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, ffn_mult: int = 4) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attention_out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        # No dropout on the wide inner activation: the residual dropout below regularises the
        # block's output, and the inner mask costs as much random numbers as the rest together.
        self.ffn = nn.Sequential(
            nn.Linear(hidden, ffn_mult * hidden),
            nn.GELU(),
            nn.Linear(ffn_mult * hidden, hidden),
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """``x`` ``[B, T, H]``, ``allowed`` ``[B, 1, T, T]`` from :func:`attention_mask`."""
        b, t, h = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(b, t, 3, self.n_heads, h // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, T, H/heads]
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        x = x + self.residual_dropout(self.attention_out(a.transpose(1, 2).reshape(b, t, h)))
        if self.training or torch.is_grad_enabled() or x.device.type != "cpu":
            return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))
        return self._feed_forward_in_tiles(x)

    def _feed_forward_in_tiles(self, x: Tensor) -> Tensor:
        """``x + ffn(ffn_norm(x))`` in tiles of :data:`FFN_TILE_ROWS` rows (inference only)."""
        rows = x.reshape(-1, x.size(-1))
        out = torch.empty_like(rows)
        for start in range(0, rows.size(0), FFN_TILE_ROWS):
            part = rows[start : start + FFN_TILE_ROWS]
            torch.add(part, self.ffn(self.ffn_norm(part)), out=out[start : start + FFN_TILE_ROWS])
        return out.view_as(x)

    def forward_last(self, x: Tensor, allowed_last: Tensor) -> Tensor:
        """The block's output at the last position only: ``[B, T, H] -> [B, 1, H]``.

        Equal to ``forward(x, allowed)[:, -1:]``: keys and values still come from every
        position, but the query, the output projection and the feed-forward run at the last
        one. ``allowed_last`` is the last query row of the mask, ``allowed[:, :, -1:]``.
        """
        b, t, h = x.shape
        heads, width = self.n_heads, h // self.n_heads
        normed = self.attention_norm(x)
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(normed[:, -1:], weight[:h], bias[:h]).view(b, 1, heads, width).transpose(1, 2)
        kv = F.linear(normed, weight[h:], bias[h:]).view(b, t, 2, heads, width)
        k, v = kv.permute(2, 0, 3, 1, 4)  # each [B, heads, T, H/heads]
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed_last, dropout_p=p)
        last = x[:, -1:] + self.residual_dropout(
            self.attention_out(a.transpose(1, 2).reshape(b, 1, h))
        )
        return last + self.residual_dropout(self.ffn(self.ffn_norm(last)))
