"""A classifier built on an embedding, for retrieval tasks.

Retrieval tasks train with the method's loss on the classifier's logits (so any method applies
unchanged) and evaluate by ranking the embeddings of unseen identities or classes.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingClassifier(nn.Module):
    """``encoder`` maps inputs to the embedding; ``head`` maps the embedding to logits."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def embed_in_batches(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Float32 embeddings of an in-memory tensor by ``model.embed`` in eval mode, batched."""
    embed = getattr(model, "embed", None)
    if embed is None:
        raise TypeError(f"{type(model).__name__} has no embed(); retrieval tasks need an EmbeddingClassifier")
    was_training = model.training
    model.eval()
    try:
        return torch.cat([embed(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
