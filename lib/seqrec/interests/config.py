"""What an interest classifier is trained on and how: :class:`InterestConfig`, and the command
line of ``jobs/train_interests.py`` (:class:`TrainInterestsConfig`), whose options are the
classifier's fields beside the job's own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seqrec import config
from seqrec.interests.labels import RARE_MODES

LINEAR = "linear"
FINETUNE = "finetune"
MODES = (LINEAR, FINETUNE)
DEFAULT_MAX_LENGTH = {LINEAR: 128, FINETUNE: 64}  # tokens; fine-tuning pays per token, twice
DESCRIPTION = "Train and evaluate the item-text -> interest-category classifier."


@dataclass(frozen=True)
class InterestConfig:
    # The help texts are those the job has always printed; the comments say more.
    mode: str = config.option(
        LINEAR,
        help="linear: softmax head on frozen embeddings; finetune: encoder trained end to end",
        choices=MODES,
    )
    depth: int = config.option(
        2, help="category levels kept as the label (0 = the full path, i.e. the leaf)"
    )
    min_count: int = config.option(10, help="classes with fewer training items are rare")
    rare: str = config.option(
        "other",
        help="rare classes: 'other' merges them into one class, 'drop' drops their items",
        choices=RARE_MODES,
    )
    # shares of the items, chosen by a hash of the id, for validation and for test
    valid_share: float = config.option(0.1, help="valid share")
    test_share: float = config.option(0.1, help="test share")
    # the split hash's salt, and the seed of the head's initialization, shuffling and dropout
    seed: int = config.option(0, help="seed")
    max_length: int = config.option(0, help="tokens per text (0 = 128 for linear, 64 for finetune)")
    # head: the penalty is weight_decay / 2 * |W|^2
    weight_decay: float = config.option(
        1e-2, help="head: L2 penalty on the weights (inputs standardized)"
    )
    # head: L-BFGS iterations between two validation checks
    round_steps: int = config.option(10, help="round steps")
    max_rounds: int = config.option(
        50, help="head: L-BFGS rounds at most (early stopping on the validation loss)"
    )
    # head: rounds without a better validation loss before stopping
    patience: int = config.option(3, help="patience")
    epochs: int = config.option(2, help="finetune: passes over the training items")
    # finetune: texts per step; AdamW learning rates of the encoder and of the head
    finetune_batch_size: int = config.option(32, help="finetune batch size")
    encoder_lr: float = config.option(5e-5, help="encoder lr")
    head_lr: float = config.option(1e-3, help="head lr")
    # finetune: AdamW weight decay (not on biases and norms)
    finetune_weight_decay: float = config.option(0.01, help="finetune weight decay")
    # finetune: share of the steps with a linear learning-rate warm-up
    warmup_share: float = config.option(0.1, help="warmup share")
    # cap on training items, chosen by hash (0 = all); validation and test stay whole
    max_train_items: int = config.option(0, help="max train items")
    # torch device; None = CUDA when available, else CPU
    device: str | None = config.option(None, help="device")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.rare not in RARE_MODES:
            raise ValueError(f"rare must be one of {RARE_MODES}, got {self.rare!r}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0 (0 = full path), got {self.depth}")
        if not (
            self.valid_share >= 0
            and self.test_share >= 0
            and self.valid_share + self.test_share < 1
        ):
            raise ValueError("valid_share and test_share must be >= 0 and sum to less than 1")

    @property
    def text_length(self) -> int:
        return self.max_length or DEFAULT_MAX_LENGTH[self.mode]


@dataclass(frozen=True)
class TrainInterestsConfig:
    items: str = config.option(help="beauty | scientific | a file/folder")
    output: str = config.option(help="folder for the saved classifier", convert=config.location)
    data_root: str = config.option("../shared/data", help="folder of the datasets")
    # use this many items, chosen by a hash of the id
    limit: int = config.option(0, help="items to use (0 = all)")
    threads: int = config.option(0, help="torch threads")  # 0 = torch's default
    experiment: str = config.option("seqrec-interests", help="MLflow experiment")
    # log params, metrics and the classifier folder to MLflow
    log_mlflow: bool = config.option(True, help="log run")
    # what to train and how: its fields are options of their own (--mode, --depth, ...)
    classifier: InterestConfig = InterestConfig()

    def check(self) -> str | None:
        from seqrec.interests.datasets import DATASETS  # with pandas: only for the job

        named = self.items in DATASETS
        path = f"{self.data_root}/{DATASETS[self.items]}" if named else self.items
        return config.at_least(self, 0, "limit", "threads") or config.missing_path(
            path, f"--items {self.items!r}:" if named else "--items"
        )  # the classifier's own fields are checked by InterestConfig

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> TrainInterestsConfig:
        return config.parse(cls, argv, prog="train_interests.py", description=DESCRIPTION)
