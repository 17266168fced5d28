"""Recipes: typed, validated training configurations loaded from small YAML files.

A recipe is `ARCH-TASK.yaml` (for example `cnn-image.yaml`); the bare architecture name picks its default
recipe (`cnn` -> `cnn-image`). Loading turns the YAML into dataclasses and rejects an unknown key or a bad
value with a one-line error naming what is allowed. `--set train.lr=3e-4` overrides any key.

This module imports only the standard library and yaml, so a recipe loads anywhere (no torch needed).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from toolkit.errors import ToolkitError, one_line
from toolkit.tracking import KINDS as TRACKERS

Task = Literal["classify", "regress", "forecast", "reconstruct", "generate", "contrastive"]
Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]
Schedule = Literal["none", "cosine", "step", "onecycle"]
Loss = Literal["auto", "cross_entropy", "bce", "mse", "mae", "huber"]
Device = Literal["auto", "cpu", "cuda"]
Activation = Literal["relu", "gelu", "tanh", "silu"]

# The bare architecture name picks its default recipe.
ALIASES: dict[str, str] = {
    "mlp": "mlp-tabular",
    "cnn": "cnn-image",
    "rnn": "rnn-forecast",
    "lstm": "lstm-forecast",
    "gru": "gru-forecast",
    "transformer": "transformer-text",
    "autoencoder": "autoencoder-anomaly",
    "gan": "gan-image",
    "mobilenet": "mobilenet-image",
    "resnet": "resnet-image",
    "efficientnet": "efficientnet-image",
}

# Which tasks each architecture can do, and which losses each task accepts.
# Sequence architectures classify token sequences (text) and forecast series.
ARCH_TASKS: dict[str, tuple[str, ...]] = {
    "mlp": ("classify", "regress"),
    "cnn": ("classify", "regress", "contrastive"),
    "rnn": ("forecast", "classify"),
    "lstm": ("forecast", "classify"),
    "gru": ("forecast", "classify"),
    "transformer": ("forecast", "classify"),
    "autoencoder": ("reconstruct",),
    "gan": ("generate",),
    "mobilenet": ("classify",),
    "resnet": ("classify",),
    "efficientnet": ("classify",),
}
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "classify": ("auto", "cross_entropy", "bce"),
    "regress": ("auto", "mse", "mae", "huber"),
    "forecast": ("auto", "mse", "mae", "huber"),
    "reconstruct": ("auto", "mse", "mae", "huber"),
    "generate": ("auto", "bce"),
    "contrastive": ("auto",),  # NT-Xent (toolkit.train.contrastive)
}


# --------------------------------------------------------------------------------------------- sections
@dataclass
class AugmentConfig:
    shift: float = 0.0  # max random translation, as a fraction of the image side (images only)
    rotate: float = 0.0  # max random rotation in degrees (images only)
    token_dropout: float = 0.0  # text: chance that a token is replaced by <unk> during training
    # Photos (image folders; torchvision transforms v2, drawn per image in the DataLoader workers):
    crop: float = 0.0  # random resized crop: smallest share of the image kept (0 = off; 0.35-0.8 typical)
    flip: bool = False  # random horizontal flip (not for digits or text)
    color_jitter: float = 0.0  # brightness, contrast and saturation changed by up to this fraction (0 = off)

    def __post_init__(self) -> None:
        _check_range("data.augment.token_dropout", self.token_dropout, 0.0, 0.9)
        _check_range("data.augment.crop", self.crop, 0.0, 1.0)
        _check_range("data.augment.color_jitter", self.color_jitter, 0.0, 1.0)
        _check_range("data.augment.shift", self.shift, 0.0, 0.5)
        _check_range("data.augment.rotate", self.rotate, 0.0, 180.0)


@dataclass
class TokenizerConfig:
    level: Literal["word", "space", "char"] = "word"  # \w+ and punctuation | space-separated | characters
    lowercase: bool = True
    max_vocab: int = 20000  # most frequent train-split tokens kept, plus <pad> and <unk>
    min_freq: int = 1  # tokens seen fewer times in the train split become <unk>
    max_length: int = 128  # longer texts are truncated to this many tokens

    def __post_init__(self) -> None:
        if self.max_vocab < 1 or self.min_freq < 1 or self.max_length < 1:
            raise ToolkitError("data.tokenizer.max_vocab, min_freq and max_length must be positive integers")


@dataclass
class DataConfig:
    source: str = "builtin:digits"  # builtin:NAME, a .csv file, an image folder or an .npz file
    target: str | None = None  # CSV target column; default: the last column
    val_fraction: float = 0.15  # share of the data held out for validation (early stopping)
    test_fraction: float = 0.2  # share held out for the final test metrics
    label_fraction: float = 1.0  # train on this stratified, seeded share of the train split's labelled rows
    image_size: int | None = None  # image folders: this square side; None: the data's (median shorter side)
    channels: int | None = None  # image folders: 1 (grayscale) or 3 (RGB); None: from the images' modes
    resize: Literal["crop", "letterbox", "stretch"] = "crop"  # image folders: how a photo becomes the square
    cache: bool = True  # image folders: decode once into a uint8 cache (~/.cache/toolkit/images) and reuse it
    workers: int | None = None  # image folders: decoding processes (None: the cores; 0: in the main process)
    max_pixels: int = 40_000_000  # image folders: larger images are skipped (a decompression-bomb guard)
    normalize: Literal["fit", "imagenet"] = "fit"  # images: statistics fitted on the train split | ImageNet's
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    window: int = 24  # forecast: past values the model sees
    horizon: int = 1  # forecast: future values it predicts
    time_column: str | None = None  # forecast CSV: optional time column (axis labels; rows must be in order)
    text_column: str = "text"  # text CSV: column holding the text
    normal_classes: list[str] | None = (
        None  # anomaly detection: classes that count as normal (null = the rest)
    )
    anomaly_classes: list[str] | None = None  # anomaly detection: classes held out of training as anomalies
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    categorical: list[str] | None = None  # CSV: columns read as categories (non-numeric ones always are)
    onehot_max_levels: int = (
        16  # CSV categories: one-hot up to this many levels (+ other, missing), else embeddings
    )
    max_levels: int = 1000  # CSV categories: keep the most frequent levels; the rest map to "other"
    max_missing: float = 0.95  # CSV: drop a column with a larger share of missing train values (logged)

    def __post_init__(self) -> None:
        overlap = set(self.normal_classes or []) & set(self.anomaly_classes or [])
        if overlap:
            raise ToolkitError(
                f"data.normal_classes and data.anomaly_classes overlap: {', '.join(sorted(overlap))}; "
                "a class is either normal or an anomaly"
            )
        if self.window < 1 or self.horizon < 1:
            raise ToolkitError(
                f"data.window and data.horizon must be >= 1 (got {self.window}, {self.horizon})"
            )
        _check_range("data.val_fraction", self.val_fraction, 0.0, 0.5)
        _check_range("data.test_fraction", self.test_fraction, 0.0, 0.5)
        if not 0 < self.label_fraction <= 1:
            raise ToolkitError(f"data.label_fraction must be in (0, 1] (got {self.label_fraction})")
        if self.image_size is not None and self.image_size < 4:
            raise ToolkitError(f"data.image_size must be at least 4 (got {self.image_size})")
        if self.onehot_max_levels < 3 or self.max_levels < 1:
            raise ToolkitError(
                f"data.onehot_max_levels must be >= 3 and data.max_levels >= 1 "
                f"(got {self.onehot_max_levels}, {self.max_levels})"
            )
        _check_range("data.max_missing", self.max_missing, 0.0, 1.0)
        if self.channels not in (None, 1, 3):
            raise ToolkitError(f"data.channels must be 1, 3 or null (got {self.channels})")
        if self.workers is not None and self.workers < 0:
            raise ToolkitError(f"data.workers must be >= 0 or null (got {self.workers})")
        if self.max_pixels < 1:
            raise ToolkitError(f"data.max_pixels must be positive (got {self.max_pixels})")


@dataclass
class TrainConfig:
    epochs: int = 20  # maximum number of passes over the train split
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate
    optimizer: Optimizer = "adam"
    momentum: float = 0.9  # SGD momentum and RMSprop momentum
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    schedule: Schedule = "cosine"  # learning-rate schedule
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor
    loss: Loss = "auto"  # auto: cross_entropy for classify, mse for regress
    label_smoothing: float = 0.0  # cross_entropy only
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    patience: int = 10  # early stopping: epochs without improvement of the validation metric; 0 disables
    min_delta: float = 0.0  # early stopping: smallest change that counts as an improvement
    seed: int = 0  # seeds the split, the initialization, shuffling, dropout and augmentation
    device: Device = "auto"  # auto picks CUDA when present
    amp: bool = True  # mixed precision on CUDA (bf16 where supported); ignored on CPU
    track: list[str] = field(default_factory=list)  # experiment trackers: mlflow, tensorboard (--track)

    def __post_init__(self) -> None:
        if isinstance(self.track, str):
            self.track = [self.track]
        if any(kind not in TRACKERS for kind in self.track):
            raise ToolkitError(f"train.track takes a list of {', '.join(TRACKERS)} (got {self.track})")
        if self.epochs < 1:
            raise ToolkitError(f"train.epochs must be a positive integer (got {self.epochs})")
        if self.batch_size < 1:
            raise ToolkitError(f"train.batch_size must be a positive integer (got {self.batch_size})")
        if self.lr <= 0:
            raise ToolkitError(f"train.lr must be positive (got {self.lr})")
        for name in ("momentum", "label_smoothing"):
            _check_range(f"train.{name}", getattr(self, name), 0.0, 0.999)
        for name in ("weight_decay", "grad_clip", "min_delta"):
            if getattr(self, name) < 0:
                raise ToolkitError(f"train.{name} must be >= 0 (got {getattr(self, name)})")
        if self.patience < 0 or self.step_size < 1 or not 0 < self.gamma <= 1:
            raise ToolkitError("train.patience must be >= 0, train.step_size >= 1 and 0 < train.gamma <= 1")
        if self.seed < 0:
            raise ToolkitError(f"train.seed must be >= 0 (got {self.seed})")


# --------------------------------------------------------------------------------------------- models
@dataclass
class TransferConfig:
    """Starting from another run's weights (toolkit.train.transfer): every model but the GAN and the
    autoencoder takes these keys."""

    init_from: str | None = None  # a run directory whose best.pt weights start this model (its head excepted)
    freeze_epochs: int | None = None  # with init_from: epochs training the head only (null = none)
    unfreeze_lr: float = 0.1  # after freeze_epochs the whole network trains at train.lr times this

    def check_transfer(self) -> None:
        if self.freeze_epochs is not None and self.freeze_epochs < 0:
            raise ToolkitError(f"model.freeze_epochs must be >= 0 or null (got {self.freeze_epochs})")
        _check_range("model.unfreeze_lr", self.unfreeze_lr, 1e-6, 1.0)


@dataclass
class MLPConfig(TransferConfig):
    hidden: list[int] = field(default_factory=lambda: [128, 64])  # width of each hidden layer
    dropout: float = 0.1  # dropout after each hidden layer
    activation: Activation = "relu"
    batch_norm: bool = False  # BatchNorm1d after each hidden linear layer

    def __post_init__(self) -> None:
        self.check_transfer()
        _check_widths("model.hidden", self.hidden, allow_empty=True)
        _check_range("model.dropout", self.dropout, 0.0, 0.9)


@dataclass
class CNNConfig(TransferConfig):
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv blocks; each halves the side
    kernel_size: int = 3
    hidden: int = 128  # width of the dense layer before the output
    dropout: float = 0.25
    batch_norm: bool = True
    stem: int | None = None  # stride-2 convolutions before the blocks (None = auto: large inputs to ~32 px)

    def __post_init__(self) -> None:
        self.check_transfer()
        _check_widths("model.channels", self.channels, allow_empty=False)
        if self.stem is not None and not 0 <= self.stem <= 5:
            raise ToolkitError(f"model.stem must be null (auto) or 0..5 (got {self.stem})")
        if self.kernel_size not in (3, 5, 7):
            raise ToolkitError(f"model.kernel_size must be one of 3, 5, 7 (got {self.kernel_size})")
        _check_widths("model.hidden", [self.hidden], allow_empty=False)
        _check_range("model.dropout", self.dropout, 0.0, 0.9)


@dataclass
class RNNConfig(TransferConfig):
    hidden: int = 64  # hidden state width
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.1  # between recurrent layers and before the head
    embed_dim: int = 64  # text: token embedding width (unused for series)
    residual: bool = True  # forecast: predict the change from the last observed value

    def __post_init__(self) -> None:
        self.check_transfer()
        _check_widths("model.hidden/layers/embed_dim", [self.hidden, self.layers, self.embed_dim], False)
        _check_range("model.dropout", self.dropout, 0.0, 0.9)


@dataclass
class TransformerConfig(TransferConfig):
    d_model: int = 64  # token/embedding width
    heads: int = 4  # attention heads (must divide d_model)
    layers: int = 2  # encoder layers
    ff_dim: int = 128  # feed-forward width inside each layer
    dropout: float = 0.1
    max_length: int = 512  # longest sequence the positional table covers
    residual: bool = True  # forecast: predict the change from the last observed value

    def __post_init__(self) -> None:
        self.check_transfer()
        _check_widths(
            "model.d_model/heads/layers/ff_dim", [self.d_model, self.heads, self.layers, self.ff_dim], False
        )
        if self.d_model % self.heads:
            raise ToolkitError(f"model.heads must divide model.d_model (got {self.heads} and {self.d_model})")
        _check_range("model.dropout", self.dropout, 0.0, 0.9)
        if self.max_length < 1:
            raise ToolkitError(f"model.max_length must be positive (got {self.max_length})")


@dataclass
class AutoencoderConfig:
    variant: Literal["dense", "conv"] = "dense"  # dense: flattened inputs; conv: images
    hidden: list[int] = field(default_factory=lambda: [64, 32])  # dense: encoder widths (decoder mirrors)
    channels: list[int] = field(
        default_factory=lambda: [16, 32]
    )  # conv: encoder channels (each halves the side)
    latent: int = 8  # width of the code; the encoder alone maps inputs to it
    dropout: float = 0.0
    threshold: Literal["f1", "quantile"] = "f1"  # f1: best F1 on labelled validation anomalies; else quantile
    quantile: float = 0.95  # quantile of normal validation scores used as threshold (and when no anomalies)

    def __post_init__(self) -> None:
        _check_widths("model.hidden", self.hidden, allow_empty=True)
        _check_widths("model.channels/latent", [*self.channels, self.latent], allow_empty=False)
        _check_range("model.dropout", self.dropout, 0.0, 0.9)
        _check_range("model.quantile", self.quantile, 0.5, 0.9999)


@dataclass
class GANConfig:
    latent: int = 32  # noise vector width
    width: int = 64  # base channel width of generator and discriminator
    label_smoothing: float = 0.1  # real labels are 1 - this for the discriminator (one-sided smoothing)
    beta1: float = 0.5  # Adam beta1 for both networks (DCGAN practice)
    d_steps: int = 1  # discriminator updates per generator update
    judge: str | None = (
        None  # a classifier run to judge samples; null trains one (cnn-image) on the same data
    )
    samples_per_class: int = 100  # generated per class for class_agreement and diversity

    def __post_init__(self) -> None:
        _check_widths(
            "model.latent/width/d_steps/samples_per_class",
            [self.latent, self.width, self.d_steps, self.samples_per_class],
            allow_empty=False,
        )
        _check_range("model.label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("model.beta1", self.beta1, 0.0, 0.999)


@dataclass
class PretrainedConfig:
    """torchvision backbones (mobilenet_v3_small, resnet18, efficientnet_b0) fine-tuned with a new head."""

    weights: str = "imagenet"  # imagenet (torchvision's published weights) | none | PATH (a state_dict file)
    freeze_epochs: int = 2  # epochs training the head only, then the whole network
    unfreeze_lr: float = 0.1  # the whole network trains at train.lr times this after freeze_epochs
    dropout: float = 0.2  # dropout before the new classifier

    def __post_init__(self) -> None:
        if self.freeze_epochs < 0:
            raise ToolkitError(f"model.freeze_epochs must be >= 0 (got {self.freeze_epochs})")
        _check_range("model.unfreeze_lr", self.unfreeze_lr, 1e-6, 1.0)
        _check_range("model.dropout", self.dropout, 0.0, 0.9)


MODEL_CONFIGS: dict[str, type] = {
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "rnn": RNNConfig,
    "lstm": RNNConfig,
    "gru": RNNConfig,
    "transformer": TransformerConfig,
    "autoencoder": AutoencoderConfig,
    "gan": GANConfig,
    "mobilenet": PretrainedConfig,
    "resnet": PretrainedConfig,
    "efficientnet": PretrainedConfig,
}


# --------------------------------------------------------------------------------------------- federated
FederatedStrategy = Literal["fedavg", "fedprox", "fedadam"]
PrivacyMode = Literal["none", "server", "client", "local"]


@dataclass
class PrivacyConfig:
    """Differential privacy as Flower provides it (toolkit federate; docs/federated.md)."""

    mode: PrivacyMode = (
        "none"  # server|client: central DP, updates clipped on the server|client; local: LocalDpMod
    )
    noise_multiplier: float = (
        1.0  # server|client: Gaussian noise std = noise_multiplier * clipping_norm / clients
    )
    clipping_norm: float = 1.0  # L2 bound on each client's model update (all modes)
    epsilon: float = 10.0  # local: privacy budget of each client update
    delta: float = 1e-5  # local: failure probability of the epsilon bound
    sensitivity: float = 1.0  # local: L1 sensitivity used to scale the Laplace noise

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "clipping_norm", "epsilon", "sensitivity"):
            if getattr(self, name) < 0 or (name != "noise_multiplier" and getattr(self, name) == 0):
                raise ToolkitError(f"federate.privacy.{name} must be positive (got {getattr(self, name)})")
        _check_range("federate.privacy.delta", self.delta, 0.0, 1.0)


@dataclass
class FederateConfig:
    """Federated training with Flower (toolkit federate): train.epochs is replaced by rounds x local_epochs."""

    clients: int = 2  # simulation: client processes, each holding one partition of the train split
    rounds: int = 10  # server rounds: send the global model, train locally, aggregate
    strategy: FederatedStrategy = "fedavg"  # Flower strategy that aggregates the client models
    partition: str = (
        "iid"  # simulation: iid | dirichlet:ALPHA (label skew, smaller = more skewed) | by-column:COL
    )
    fraction_fit: float = 1.0  # share of the connected clients sampled each round
    local_epochs: int = 1  # passes over its own data a client makes per round
    proximal_mu: float = 0.01  # fedprox: weight of the proximal term (mu/2)*||w - w_global||^2
    server_lr: float = 0.01  # fedadam: server-side learning rate (eta)
    round_timeout: float = 600.0  # seconds the server waits for replies; late or dead clients are left out
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        if self.clients < 1 or self.rounds < 1 or self.local_epochs < 1:
            raise ToolkitError(
                "federate.clients, federate.rounds and federate.local_epochs must be positive integers "
                f"(got {self.clients}, {self.rounds}, {self.local_epochs})"
            )
        if not 0 < self.fraction_fit <= 1:
            raise ToolkitError(f"federate.fraction_fit must be in (0, 1] (got {self.fraction_fit})")
        if self.proximal_mu < 0 or self.server_lr <= 0 or self.round_timeout <= 0:
            raise ToolkitError("federate.proximal_mu must be >= 0, server_lr and round_timeout > 0")
        parse_partition(self.partition)


def parse_partition(text: str) -> tuple[str, float | str | None]:
    """'iid' -> ('iid', None); 'dirichlet:0.5' -> ('dirichlet', 0.5); 'by-column:site' -> ('by-column', 'site')."""
    kind, _, arg = str(text).partition(":")
    if kind == "iid" and not arg:
        return "iid", None
    if kind == "dirichlet":
        try:
            alpha = float(arg)
        except ValueError:
            alpha = -1.0
        if alpha > 0 and math.isfinite(alpha):
            return "dirichlet", alpha
    if kind == "by-column" and arg:
        return "by-column", arg
    raise ToolkitError(
        f"federate.partition must be iid, dirichlet:ALPHA (ALPHA > 0) or by-column:COLUMN (got {text!r})"
    )


# --------------------------------------------------------------------------------------------- recipe
@dataclass
class Recipe:
    name: str
    arch: str
    task: Task
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # the arch's config dataclass (MLPConfig, CNNConfig, ...)
    train: TrainConfig = field(default_factory=TrainConfig)
    # What `toolkit tune` varies: dotted key -> range {low, high, log, step} or list of choices (see
    # toolkit/tune/space.py, which checks it: here it stays raw). It describes how to explore around the
    # recipe, not the recipe itself: it is left out of to_dict (run directories, checkpoints and model
    # metadata) and of equality.
    search: dict[str, Any] = field(default_factory=dict, compare=False)
    # Federated runs only (toolkit federate): rounds, clients, strategy, partition, privacy. Left out of
    # to_dict when unset, so a centrally trained run's recipe stays as it was.
    federate: FederateConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw.pop("search")
        if raw["federate"] is None:
            raw.pop("federate")
        return raw

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def loss(self) -> str:
        if self.train.loss != "auto":
            return self.train.loss
        return {"classify": "cross_entropy", "generate": "bce"}.get(self.task, "mse")


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    """Validate a raw (YAML) mapping into a Recipe. Raises ToolkitError naming the bad key or value."""
    if not isinstance(raw, dict):
        raise ToolkitError("a recipe must be a YAML mapping with keys name, arch, task, data, model, train")
    raw = dict(raw)
    arch = raw.get("arch")
    if arch not in MODEL_CONFIGS:
        raise ToolkitError(f"arch must be one of {', '.join(MODEL_CONFIGS)} (got {arch!r})")
    model_raw = raw.pop("model", None) or {}
    search = raw.pop("search", None)
    recipe = _build(Recipe, {**raw, "model": None}, "")
    recipe.model = _build(MODEL_CONFIGS[arch], model_raw, "model")
    if recipe.task not in ARCH_TASKS[arch]:
        allowed_tasks = ", ".join(ARCH_TASKS[arch])
        raise ToolkitError(f"task for arch {arch} must be one of {allowed_tasks} (got {recipe.task})")
    if arch == "transformer":  # the positional table must cover the longest input
        longest = recipe.data.tokenizer.max_length if recipe.task == "classify" else recipe.data.window
        if recipe.model.max_length < longest:
            what = "data.tokenizer.max_length" if recipe.task == "classify" else "data.window"
            raise ToolkitError(f"model.max_length ({recipe.model.max_length}) must be >= {what} ({longest})")
    allowed_losses = TASK_LOSSES.get(recipe.task, ("auto",))
    if recipe.train.loss not in allowed_losses:
        raise ToolkitError(
            f"train.loss for task {recipe.task} must be one of {', '.join(allowed_losses)} "
            f"(got {recipe.train.loss})"
        )
    if search is not None:  # kept raw: toolkit.tune.space checks its keys and ranges against the recipe
        if not isinstance(search, dict):
            raise ToolkitError("search must be a mapping of recipe keys to ranges or choice lists")
        recipe.search = search
    return recipe


# --------------------------------------------------------------------------------------------- lookup
def recipe_dir() -> Path:
    """The recipes shipped inside the package (also linked as recipes/ at the repository root)."""
    return Path(str(resources.files("toolkit.recipes")))


def list_recipes() -> list[Recipe]:
    return [load_recipe(p) for p in sorted(recipe_dir().glob("*.yaml"))]


# The shipped recipes in the order reports list them (by architecture); tests hold it to recipes/.
SHIPPED_RECIPES = (
    "mlp-tabular",
    "mlp-regress",
    "cnn-image",
    "cnn-contrastive",
    "rnn-forecast",
    "lstm-forecast",
    "gru-forecast",
    "transformer-forecast",
    "lstm-text",
    "gru-text",
    "transformer-text",
    "autoencoder-anomaly",
    "gan-image",
    "mobilenet-image",
    "resnet-image",
    "efficientnet-image",
)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe name (`cnn-image`), an architecture (`cnn`) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ToolkitError(f"recipe file not found: {text}")
        return path
    name = ALIASES.get(text, text)
    candidate = recipe_dir() / f"{name}.yaml"
    if not candidate.is_file():
        allowed = ", ".join(sorted(set(recipe_names()) | set(ALIASES)))
        raise ToolkitError(f"unknown recipe {text!r}; allowed: {allowed}, or a path to a .yaml file")
    return candidate


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override (`section.key=value` strings) and validate a recipe."""
    path = resolve_recipe_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ToolkitError(f"{path}: not valid YAML ({one_line(exc)})") from exc
    for item in overrides or []:
        apply_override(raw, item)
    return recipe_from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override to a raw recipe mapping; the value is parsed as YAML."""
    if "=" not in item:
        raise ToolkitError(f"--set expects KEY=VALUE such as train.lr=3e-4 (got {item!r})")
    key, _, text = item.partition("=")
    keys = key.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        first = one_line(exc)
        raise ToolkitError(f"--set {key}: value {text!r} is not valid YAML ({first})") from None
    cls: Any = Recipe
    node = raw
    for depth, part in enumerate(keys):
        allowed = allowed_keys(cls, raw)
        if part not in allowed:
            where = ".".join(keys[:depth]) or "the recipe"
            raise ToolkitError(f"unknown key {key!r} in --set: {where} has {', '.join(allowed)}")
        if depth == len(keys) - 1:
            node[part] = value
            return
        sub_cls = _optional_inner(allowed[part])
        if not (isinstance(sub_cls, type) and dataclasses.is_dataclass(sub_cls)):
            raise ToolkitError(f"unknown key {key!r} in --set: {'.'.join(keys[: depth + 1])} has no sub-keys")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ToolkitError(f"cannot set {key!r}: {part} is not a mapping")
        node, cls = child, sub_cls


def _optional_inner(tp: Any) -> Any:
    """`X | None` -> X (an optional section such as `federate` takes sub-keys like a plain one)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


def allowed_keys(cls: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """The keys of a recipe section (`cls`) and their types; the model section's from the raw recipe's arch."""
    hints = typing.get_type_hints(cls)
    if cls is Recipe:
        hints["model"] = MODEL_CONFIGS.get(raw.get("arch"), dict)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------------- validation
def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ToolkitError(f"{prefix or 'recipe'} must be a mapping (got {type(raw).__name__})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        where = prefix or "the recipe"
        raise ToolkitError(f"unknown key {_join(prefix, unknown[0])!r}: {where} has {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, _join(prefix, name))
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ToolkitError(f"missing key {_join(prefix, missing[0])!r} in recipe")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # defensive: should not happen after the checks above
        raise ToolkitError(f"{prefix or 'recipe'}: {exc}") from exc


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if value is None:
        raise ToolkitError(f"{name} must not be empty")
    if origin is Literal:
        if value not in args:
            raise ToolkitError(f"{name} must be one of {', '.join(map(str, args))} (got {value!r})")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, name)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ToolkitError(f"{name} must be a list such as [64, 32] (got {value!r})")
        return [_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ToolkitError(f"{name} must be true or false (got {value!r})")
    if tp is int:
        if isinstance(value, bool) or not _is_intlike(value):
            raise ToolkitError(f"{name} must be an integer (got {value!r})")
        return int(value)
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ToolkitError(f"{name} must be a number (got {value!r})") from None
        if not math.isfinite(number):
            raise ToolkitError(f"{name} must be a finite number (got {value!r})")
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ToolkitError(f"{name} must be a string (got {value!r})")
        return str(value)
    return value


def _is_intlike(value: Any) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):
        try:
            int(value)
            return True
        except ValueError:
            return False
    return False


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ToolkitError(f"{name} must be between {lo} and {hi} (got {value})")


def _check_widths(name: str, widths: list[int], allow_empty: bool) -> None:
    if not widths and not allow_empty:
        raise ToolkitError(f"{name} must list at least one width")
    if any(w < 1 for w in widths):
        raise ToolkitError(f"{name} widths must be positive integers (got {widths})")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
