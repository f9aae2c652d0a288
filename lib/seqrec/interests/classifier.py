"""The interest classifier: a text -> probabilities over interest categories.

The sentence embedding of :class:`seqrec.text.embedding.TextEncoder` (all-MiniLM-L6-v2,
mean-pooled, L2-normalized) feeds a softmax head over standardized features. The encoder is the
installed, frozen one (``linear``) or a copy tuned with the head (``finetune``); see
:mod:`seqrec.interests.fit`.

A saved classifier is a folder of data only -- nothing is pickled::

    interests.json      format version, classes, mode, depth, max_length, encoder folder
    head.safetensors    standardization (mean, scale) and the linear layer
    encoder/            finetune only: the tuned encoder and tokenizer (``save_pretrained``)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from seqrec.interests.config import FINETUNE
from seqrec.text.embedding import TextEncoder, get_encoder

CONFIG_FILE = "interests.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


class Head(nn.Module):
    """Standardize the sentence embedding, then one linear layer: ``[B, D] -> [B, C]``.

    The embeddings are unit vectors whose coordinates are small and off-centre; standardizing
    (with statistics of the training items under the pre-trained encoder, kept fixed) lets one
    learning rate and one weight decay fit every dataset.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.scale)  # [B, C]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pooling of :meth:`TextEncoder.encode`, with gradients (the tests compare the two)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
    return nn.functional.normalize(pooled, p=2, dim=1)


class InterestClassifier:
    """Texts -> probabilities over :attr:`classes` (see the module docstring)."""

    def __init__(
        self, encoder: TextEncoder, head: Head, classes: Sequence[str], info: dict[str, Any]
    ) -> None:
        self.encoder = encoder
        self.head = head.cpu().eval()
        self.classes = tuple(classes)
        self.info = dict(info)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``[len(texts), len(classes)]`` float32, rows summing to 1."""
        return self.proba_from_embeddings(self.encoder.encode(list(texts), batch_size=batch_size))

    def proba_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.head(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
            return torch.softmax(logits, dim=1).numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        """The most likely class of each text and its probability (the confidence)."""
        proba = self.predict_proba(texts, batch_size)
        best = proba.argmax(axis=1)
        return [self.classes[i] for i in best], proba[np.arange(len(best)), best].astype(np.float64)

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(out / HEAD_FILE))
        encoder = None
        if self.info["mode"] == FINETUNE:
            encoder = ENCODER_DIR
            self.encoder.model.save_pretrained(out / ENCODER_DIR)
            self.encoder.tokenizer.save_pretrained(out / ENCODER_DIR)
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "encoder": encoder,  # None: the installed all-MiniLM-L6-v2
            "dim": int(self.encoder.dim),
            **self.info,
        }
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> InterestClassifier:
        folder = Path(path)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder}: unknown interest classifier format {meta.get('format_version')}"
            )
        if meta["encoder"]:
            encoder = TextEncoder(str(folder / meta["encoder"]), int(meta["max_length"]), device)
        else:  # the shared, never trained, process-wide instance
            encoder = get_encoder(max_length=int(meta["max_length"]), device=device)
        if encoder.dim != meta["dim"]:
            raise ValueError(
                f"{folder}: the encoder gives {encoder.dim}-d vectors, the head wants {meta['dim']}"
            )
        head = Head(encoder.dim, len(meta["classes"]))
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        info = {
            k: v
            for k, v in meta.items()
            if k not in ("format_version", "classes", "encoder", "dim")
        }
        return cls(encoder, head, meta["classes"], info)
