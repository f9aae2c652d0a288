"""Pieces every sequence model shares: masks, positions, the feature fusion, masking strategies.

Conventions (the contract of every model in this package):

- **Padding id 0, left padding.** ``item_idx[b]`` is ``[0, ..., 0, i_1, ..., i_L]``: the most
  recent event is always the last column, so "the next item after this history" is read from
  ``hidden[:, -1]`` and truncating a history to its newest ``max_len`` events never moves the
  newest one. The helpers below find real positions from ``item_idx != 0`` and so also work on
  right-padded input, but the GRU (packing) and the masked-item strategy (append the mask token
  at the end) rely on left padding.
- **Positions count back from the newest event** (0 = newest), as in the original SASRec code,
  where left padding makes absolute slots equal to distances from the end. Extra left padding
  therefore changes nothing at real positions.
- **Batch keys.** ``item_idx`` ``[B, T]`` long is required. Optional event-level channels, all
  ``[B, T]`` and aligned with ``item_idx``: ``event_type_idx`` (long, 0 = unknown),
  ``category_idx`` (long, 0 = unknown), ``time_gap`` (seconds since the user's previous event,
  float or int, >= 0; bucketed on a log2 scale by :func:`bucketize_time_gap`). Item-level side
  information (an attribute bag per item, a frozen precomputed vector per item such as a text
  embedding) is given to the model once, as tables indexed by item id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAD = 0
ITEM_IDX = "item_idx"
EVENT_TYPE_IDX = "event_type_idx"
CATEGORY_IDX = "category_idx"
TIME_GAP = "time_gap"
# Keys whose tensors are [B, T] and aligned with item_idx: shifted and masked together.
SEQUENCE_KEYS: tuple[str, ...] = (ITEM_IDX, EVENT_TYPE_IDX, CATEGORY_IDX, TIME_GAP)

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class SequenceModelConfig:
    """Fields every model shares; each model's own config adds its architecture fields."""

    n_items: int  # catalogue size; item ids are 1..n_items, 0 is padding
    hidden_size: int = 128
    max_len: int = 50  # newest events the model reads; older ones are cut by the data layer
    dropout: float = 0.5  # on embeddings and inside the encoder (sparse data overfits fast)
    n_event_types: int = 0  # event-type vocabulary size (ids 1..n), 0 = channel unused
    n_categories: int = 0  # category vocabulary size; > 0 also enables the next-category head
    n_time_buckets: int = 0  # log2 time-gap buckets, 0 = channel unused
    n_item_attributes: int = 0  # attribute vocabulary size for the item attribute bag
    item_attribute_slots: int = 0  # attributes per item (the bag's padded width)
    item_vector_dim: int = 0  # width of a frozen precomputed item vector (e.g. text embedding)


def padding_mask(item_idx: Tensor) -> Tensor:
    """True at real events. ``[B, T]`` bool."""
    return item_idx != PAD


def positions_from_end(item_idx: Tensor) -> Tensor:
    """Distance of each real event from the newest one (0 = newest); 0 at padding. ``[B, T]``."""
    real = padding_mask(item_idx).long()
    # Number of real events at or after t, minus one.
    after = real.flip(1).cumsum(1).flip(1) - 1  # [B, T]
    return (after * real).clamp(min=0)


def last_position(item_idx: Tensor) -> Tensor:
    """Index of the newest real event per row (``T - 1`` under left padding). ``[B]`` long."""
    real = padding_mask(item_idx)
    t = item_idx.size(1)
    idx = torch.arange(t, device=item_idx.device).expand_as(item_idx)
    return torch.where(real, idx, torch.zeros_like(idx)).amax(dim=1)


def gather_last(hidden: Tensor, item_idx: Tensor) -> Tensor:
    """The hidden state at the newest real event of each row. ``[B, T, H] -> [B, H]``."""
    idx = last_position(item_idx)  # [B]
    return hidden[torch.arange(hidden.size(0), device=hidden.device), idx]


def attention_mask(item_idx: Tensor, causal: bool) -> Tensor:
    """Which keys each query may attend to, ``[B, 1, T, T]`` bool (True = allowed).

    Padding keys are excluded; with ``causal`` so are later events. Every position may always
    attend to itself, so no softmax row is empty: padding queries then produce finite garbage
    (never read) instead of NaNs that would leak through later layers.
    """
    t = item_idx.size(1)
    keys = padding_mask(item_idx)[:, None, None, :]  # [B, 1, 1, T]
    allowed = keys.expand(-1, 1, t, t)
    if causal:
        lower = torch.ones(t, t, dtype=torch.bool, device=item_idx.device).tril()
        allowed = allowed & lower
    eye = torch.eye(t, dtype=torch.bool, device=item_idx.device)
    return allowed | eye  # [B, 1, T, T]


def bucketize_time_gap(seconds: Tensor, n_buckets: int) -> Tensor:
    """Log2 buckets of a gap in seconds: ``1 + floor(log2(1 + s))``, capped at ``n_buckets``.

    Bucket 0 is reserved for padding, so callers zero it where ``item_idx == 0``. With 32
    buckets the last one starts at 2^31 s, far beyond any real gap.
    """
    s = seconds.float().clamp(min=0.0)
    return (1 + torch.floor(torch.log2(1.0 + s))).long().clamp(max=n_buckets)


class FeatureFusion(nn.Module):
    """The one place where item ids and side information become vectors.

    Item-level representation (used for the inputs *and*, tied, for the output scores):
    ``id embedding + mean(attribute embeddings) + W · frozen_item_vector``. Event-level channels
    (event type, category, time-gap bucket) are added at each position. Everything is summed,
    as in RecBole's SASRecF "sum" fusion, so one fused table serves both as input and as
    output embedding (weight tying).
    """

    item_attributes: Tensor  # buffer [n_rows, slots], when attributes are used
    item_vectors: Tensor  # buffer [n_rows, D], when precomputed item vectors are used

    def __init__(
        self,
        config: SequenceModelConfig,
        n_extra_tokens: int = 0,
        item_attributes: Tensor | None = None,
        item_vectors: Tensor | None = None,
    ) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.n_rows = config.n_items + 1 + n_extra_tokens  # extra tokens, e.g. [MASK], at the end
        self.n_time_buckets = config.n_time_buckets
        self.item_embedding = nn.Embedding(self.n_rows, hidden, padding_idx=PAD)
        self.attribute_embedding: nn.Embedding | None = None
        if config.n_item_attributes > 0:
            slots = config.item_attribute_slots
            if item_attributes is None:  # filled later by load_state_dict
                item_attributes = torch.zeros(config.n_items + 1, slots, dtype=torch.long)
            if item_attributes.shape != (config.n_items + 1, slots):
                raise ValueError(f"item_attributes must be [{config.n_items + 1}, {slots}]")
            self.attribute_embedding = nn.Embedding(config.n_item_attributes + 1, hidden, PAD)
            self.register_buffer("item_attributes", _pad_rows(item_attributes.long(), self.n_rows))
        self.vector_projection: nn.Linear | None = None
        if config.item_vector_dim > 0:
            dim = config.item_vector_dim
            if item_vectors is None:
                item_vectors = torch.zeros(config.n_items + 1, dim)
            if item_vectors.shape != (config.n_items + 1, dim):
                raise ValueError(f"item_vectors must be [{config.n_items + 1}, {dim}]")
            self.vector_projection = nn.Linear(dim, hidden, bias=False)
            self.register_buffer("item_vectors", _pad_rows(item_vectors.float(), self.n_rows))
        self.event_type_embedding = _optional_embedding(config.n_event_types, hidden)
        self.category_embedding = _optional_embedding(config.n_categories, hidden)
        self.time_gap_embedding = _optional_embedding(config.n_time_buckets, hidden)
        self._frozen_table: Tensor | None = None

    def freeze_item_table(self) -> None:
        """Compute the fused table once and reuse it: for inference with fixed weights.

        With attributes or item vectors the table is a projection of every item's side
        information, which would otherwise be recomputed on every forward pass.
        """
        self._frozen_table = None
        with torch.no_grad():
            self._frozen_table = self.item_table().detach().contiguous()

    def item_table(self) -> Tensor:
        """The fused representation of every item id (row 0 = padding). ``[n_rows, H]``."""
        if self._frozen_table is not None:
            return self._frozen_table
        table = self.item_embedding.weight  # [V, H]
        if self.attribute_embedding is not None:
            # Mean over each item's attributes, padding slots excluded (all-padding rows give
            # 0); one fused kernel, no [V, A, H] intermediate.
            bag = F.embedding_bag(
                self.item_attributes,
                self.attribute_embedding.weight,
                mode="mean",
                padding_idx=PAD,
            )
            table = table + bag
        if self.vector_projection is not None:
            table = table + self.vector_projection(self.item_vectors)  # [V, H]
        return table

    def forward(self, batch: Batch) -> Tensor:
        """Fused event vectors, zero at padding. ``[B, T, H]``."""
        item_idx = batch[ITEM_IDX]
        x = F.embedding(item_idx, self.item_table())  # [B, T, H]
        if self.event_type_embedding is not None and EVENT_TYPE_IDX in batch:
            x = x + self.event_type_embedding(batch[EVENT_TYPE_IDX])
        if self.category_embedding is not None and CATEGORY_IDX in batch:
            x = x + self.category_embedding(batch[CATEGORY_IDX])
        if self.time_gap_embedding is not None and TIME_GAP in batch:
            x = x + self.time_gap_embedding(
                bucketize_time_gap(batch[TIME_GAP], self.n_time_buckets)
            )
        return x * padding_mask(item_idx).unsqueeze(-1).to(x.dtype)


def _optional_embedding(n: int, hidden: int) -> nn.Embedding | None:
    return nn.Embedding(n + 1, hidden, padding_idx=PAD) if n > 0 else None


def _pad_rows(table: Tensor, n_rows: int) -> Tensor:
    """Extra tokens (e.g. [MASK]) carry no side information: zero rows at the end."""
    extra = n_rows - table.size(0)
    return torch.cat([table, table.new_zeros(extra, *table.shape[1:])]) if extra else table


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


# --- masking strategies: how a training sequence becomes (inputs, targets) ---------------------


@dataclass
class TrainingPair:
    """Model inputs and the item to predict at each position (0 = no loss there)."""

    inputs: Batch
    targets: Tensor  # [B, T] long
    category_targets: Tensor | None  # [B, T] long, 0 = no loss; None without category_idx
    event_type_targets: Tensor | None = None  # [B, T] long, event type of the target event


def _sequence_items(batch: Batch) -> Batch:
    return {k: v for k, v in batch.items() if k in SEQUENCE_KEYS}


class CausalMasking:
    """Next-item prediction at every position: input ``x[:-1]``, target ``x[1:]``.

    Training batches hold up to ``max_len + 1`` events per row so that each row yields up to
    ``max_len`` (input, next item) pairs in one pass (SASRec's per-position loss).
    """

    causal = True

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def training_pair(self, batch: Batch, generator: torch.Generator | None = None) -> TrainingPair:
        seq = _sequence_items(batch)
        inputs = {k: v[:, :-1][:, -self.max_len :] for k, v in seq.items()}
        real_input = padding_mask(inputs[ITEM_IDX])
        targets = batch[ITEM_IDX][:, 1:][:, -self.max_len :] * real_input
        categories = event_types = None
        if CATEGORY_IDX in batch:
            categories = batch[CATEGORY_IDX][:, 1:][:, -self.max_len :] * real_input
        if EVENT_TYPE_IDX in batch:
            event_types = batch[EVENT_TYPE_IDX][:, 1:][:, -self.max_len :] * real_input
        return TrainingPair(inputs, targets, categories, event_types)

    def prediction_inputs(self, batch: Batch) -> Batch:
        """The history as it is; the prediction is read at the last column."""
        return {k: v[:, -self.max_len :] for k, v in _sequence_items(batch).items()}


class MaskedItemMasking:
    """Cloze training (BERT4Rec): hide random events behind a [MASK] token and predict them.

    Each real event is masked with probability ``mask_prob`` (at least one per row); with
    probability ``last_only_prob`` a row masks only its newest event instead, which matches the
    prediction-time input (BERT4Rec, section 3.6). Side channels at a masked position are zeroed:
    the category of the hidden item would give it away, and at prediction time nothing is known
    about the next event.
    """

    causal = False

    def __init__(self, max_len: int, mask_id: int, mask_prob: float, last_only_prob: float) -> None:
        self.max_len = max_len
        self.mask_id = mask_id
        self.mask_prob = mask_prob
        self.last_only_prob = last_only_prob

    def training_pair(self, batch: Batch, generator: torch.Generator | None = None) -> TrainingPair:
        seq = {k: v[:, -self.max_len :] for k, v in _sequence_items(batch).items()}
        items = seq[ITEM_IDX]
        real = padding_mask(items)
        draw = torch.rand(items.shape, generator=generator, device=items.device)
        masked = (draw < self.mask_prob) & real
        last = last_position(items)
        newest = torch.zeros_like(real)
        newest[torch.arange(items.size(0), device=items.device), last] = True
        newest &= real
        row_draw = torch.rand(items.size(0), generator=generator, device=items.device)
        last_only = (row_draw < self.last_only_prob)[:, None] | ~masked.any(1, keepdim=True)
        masked = torch.where(last_only, newest, masked)  # [B, T]
        inputs = {k: v.masked_fill(masked, 0) for k, v in seq.items()}
        inputs[ITEM_IDX] = items.masked_fill(masked, self.mask_id)
        targets = items * masked
        categories = seq[CATEGORY_IDX] * masked if CATEGORY_IDX in seq else None
        event_types = seq[EVENT_TYPE_IDX] * masked if EVENT_TYPE_IDX in seq else None
        return TrainingPair(inputs, targets, categories, event_types)

    def prediction_inputs(self, batch: Batch) -> Batch:
        """Append a [MASK] event after the history; the prediction is read there."""
        out = {}
        for key, value in _sequence_items(batch).items():
            fill = self.mask_id if key == ITEM_IDX else 0
            extra = torch.full_like(value[:, :1], fill)
            out[key] = torch.cat([value, extra], dim=1)[:, -self.max_len :]
        return out


Masking = CausalMasking | MaskedItemMasking


# --- the common model surface --------------------------------------------------------------------


class SequentialRecommender(nn.Module):
    """Fusion in, ``[B, T, H]`` out, plus the three prediction heads every model offers.

    Subclasses build ``self.fusion`` and ``self.masking`` and implement :meth:`encode`.
    """

    config: SequenceModelConfig
    fusion: FeatureFusion
    masking: Masking

    def _build_heads(self, config: SequenceModelConfig) -> None:
        hidden = config.hidden_size
        self.category_head = (
            nn.Linear(hidden, config.n_categories + 1) if config.n_categories else None
        )
        self.intent_head = nn.Linear(hidden, 1)

    def encode(self, x: Tensor, item_idx: Tensor) -> Tensor:
        """Fused inputs ``[B, T, H]`` -> contextual hidden states ``[B, T, H]``."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> Tensor:
        """Hidden state per position ``[B, T, H]``; position t summarises events <= t (causal
        models) or the whole sequence (bidirectional ones). Padding positions are undefined."""
        return self.encode(self.fusion(batch), batch[ITEM_IDX])

    def item_table(self) -> Tensor:
        """Output embeddings of items 0..n_items (row 0 = padding). ``[n_items + 1, H]``."""
        return self.fusion.item_table()[: self.config.n_items + 1]

    def item_scores(self, hidden: Tensor) -> Tensor:
        """Dot-product scores against every item. ``[..., H] -> [..., n_items + 1]``.

        Column 0 is the padding item: losses drop it and metrics never rank it.
        """
        return hidden @ self.item_table().T

    def next_category(self, hidden: Tensor) -> Tensor:
        """Next-category logits ``[..., n_categories + 1]`` (column 0 = unknown)."""
        if self.category_head is None:
            raise ValueError("model was built with n_categories=0: no next-category head")
        return self.category_head(hidden)

    def purchase_intent(self, hidden: Tensor) -> Tensor:
        """Purchase-intent logit ``[...]`` (apply a sigmoid for a probability)."""
        return self.intent_head(hidden).squeeze(-1)

    def predict_hidden(self, batch: Batch) -> Tensor:
        """The hidden state that predicts the event after each history. ``[B, H]``."""
        inputs = self.masking.prediction_inputs(batch)
        return self(inputs)[:, -1]

    def _init_weights(self) -> None:
        """BERT-style init (normal, std 0.02), as in the SASRec/BERT4Rec reference code."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def scaled(x: Tensor) -> Tensor:
    """Embeddings times sqrt(H), as in Transformer/SASRec inputs."""
    return x * math.sqrt(x.size(-1))
