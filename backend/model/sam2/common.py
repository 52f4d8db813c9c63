"""Small layers SAM 2's modules share: the MLP whose parameters Meta names ``layers.N``."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last).

    Parameter names ``layers.0``, ``layers.1``, … as in SAM 2.1 checkpoints.
    """

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 activation: type[nn.Module] = nn.ReLU, sigmoid_output: bool = False) -> None:
        """Args:
            input_dim, hidden_dim, output_dim: widths of the input, every hidden layer and the output.
            num_layers: number of linear layers (>= 1).
            activation: activation class applied after every layer but the last.
            sigmoid_output: apply a sigmoid to the output (SAM 2.1's IoU head).
        """
        super().__init__()
        widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ...×input_dim. Returns: ...×output_dim."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return torch.sigmoid(x) if self.sigmoid_output else x
