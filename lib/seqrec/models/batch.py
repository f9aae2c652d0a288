"""The batch every sequence model reads: its keys, the padding id and the padding side.

Conventions (the contract between the data layer and every model in this package):

- **Padding id 0, left padding.** ``item_idx[b]`` is ``[0, ..., 0, i_1, ..., i_L]``: the most
  recent event is always the last column, so "the next item after this history" is read from
  ``hidden[:, -1]`` and truncating a history to its newest ``max_len`` events never moves the
  newest one. The helpers of :mod:`seqrec.models.masks` find real positions from
  ``item_idx != 0`` and so also work on right-padded input, but the GRU (packing) and the
  masked-item strategy (append the mask token at the end) rely on left padding.
- **Positions count back from the newest event** (0 = newest), as in the original SASRec code,
  where left padding makes absolute slots equal to distances from the end. Extra left padding
  therefore changes nothing at real positions.
- **Batch keys.** ``item_idx`` ``[B, T]`` long is required. Optional event-level channels, all
  ``[B, T]`` and aligned with ``item_idx``: ``event_type_idx`` (long, 0 = unknown),
  ``category_idx`` (long, 0 = unknown), ``time_gap`` (seconds since the user's previous event,
  float or int, >= 0; bucketed on a log2 scale by :func:`seqrec.models.fusion.bucketize_time_gap`).
  Item-level side information (an attribute bag per item, a frozen precomputed vector per item
  such as a text embedding) is given to the model once, as tables indexed by item id.
"""

from __future__ import annotations

from torch import Tensor

PAD = 0
ITEM_IDX = "item_idx"
EVENT_TYPE_IDX = "event_type_idx"
CATEGORY_IDX = "category_idx"
TIME_GAP = "time_gap"
# Keys whose tensors are [B, T] and aligned with item_idx: shifted and masked together.
SEQUENCE_KEYS: tuple[str, ...] = (ITEM_IDX, EVENT_TYPE_IDX, CATEGORY_IDX, TIME_GAP)

Batch = dict[str, Tensor]
