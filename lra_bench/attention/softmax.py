"""Softmax dot-product attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017).

The quadratic baseline every efficient mixer is compared against. Uses PyTorch's fused
`scaled_dot_product_attention`; padded keys are masked out so they never influence
real positions, and outputs at padded positions are zero.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxAttention(nn.Module):
    supports_mask = True
    complexity = "O(n^2)"

    def __init__(self, hidden_dim: int, num_heads: int = 8, dropout: float = 0.0, use_bias: bool = True):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        self.hidden_dim, self.num_heads, self.head_dim = hidden_dim, num_heads, hidden_dim // num_heads
        self.dropout = dropout
        self.qkv_proj = nn.Linear(hidden_dim, 3 * hidden_dim, bias=use_bias)
        self.out_proj = nn.Linear(hidden_dim, hidden_dim, bias=use_bias)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, return_attention: bool = False):
        B, L, D = x.shape
        qkv = self.qkv_proj(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, L, Dh)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = self.out_proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return (out, None) if return_attention else out
