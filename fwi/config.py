"""The project's one configuration system: a typed schema, YAML files, dotted ``key=value`` overrides.

Every CLI resolves its settings the same way: schema defaults, then ``--config FILE.yaml``, then
``section.key=value`` overrides. Unknown keys and wrong types are rejected with a one-line
:class:`~fwi.errors.ConfigError` that names the key and lists the valid ones. The resolved config is
saved with every run and checkpoint, so a result can always be reproduced.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fwi.errors import ConfigError
from fwi.physics.acquisition import FAMILIES

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""A run or study name: one plain folder name (no '/', no '..', not absolute)."""

ENV_PREFIX = "env:"
"""``tune.storage: env:VAR`` reads the storage URL from environment variable VAR when the study opens."""


def _leaf_types(annotation: Any) -> set[Any]:
    """``int | None`` -> ``{int}``: the types a field accepts besides None."""
    if get_origin(annotation) in (Union, types.UnionType):
        return {a for a in get_args(annotation) if a is not type(None)}
    return {annotation}


def _same_kind(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse a value of another kind than its field's: no ``true`` or ``"3"`` for a number, no ``1`` for a bool
    (pydantic would coerce them silently)."""
    kinds = _leaf_types(cls.model_fields[info.field_name].annotation)
    if kinds <= {int, float} and isinstance(value, bool | str):
        want = "an integer" if kinds == {int} else "a number"
        raise ValueError(f"must be {want}, not {'a boolean' if isinstance(value, bool) else 'a string'}")
    if kinds == {bool} and not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


class _Schema(BaseModel):
    """Unknown fields are errors, assignments are validated, floats must be finite (``inf``/``nan`` are errors)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Section(_Schema):
    """Base of every config section: unknown fields are errors, assignments are validated.

    Values are not coerced across kinds: a number field refuses ``true`` and ``"3"``, a boolean field refuses
    ``1`` and ``"yes"``, and floats must be finite (``inf``/``nan`` are errors).
    """

    _no_coercion = field_validator("*", mode="before")(_same_kind)


class DataConfig(Section):
    """Where the training and test data live and how the training data is split."""

    root: Path | None = Field(
        None,
        description="Competition training root: a folder holding train_samples/<family>/, a folder of "
        "family folders, or one family folder. null: use synthetic data (see the synth section).",
    )
    families: list[str] | None = Field(None, description="Train on these families only (null: all found).")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of each family's files held out for validation."
    )
    split_seed: int = Field(0, description="Seed of the train/validation split.")
    split_by: Literal["file", "sample"] = Field(
        "file", description="Hold out whole files (no file in both splits) or single samples. With file, a family "
        "with too few files for a file split (Kaggle's train_samples: 2 per family, one would be half the data) is "
        "split by sample, and a one-line note says so.")
    test_dir: Path | None = Field(None, description="Folder of test files <oid>.npy (Kaggle's test/).")
    extra_roots: list[Path] = Field(
        [], description="More training trees mixed in (e.g. written by python -m fwi.synth: pseudo-labelled test "
        "maps, re-simulated copies of training maps); with data.root null they are added to the cached synthetic "
        "tree. Training data only, unless data.validate_extra_roots.")
    validate_extra_roots: bool = Field(
        False, description="Also hold out part of data.extra_roots for validation, split by the same rules. Off, "
        "the validation score is measured on data.root alone: pseudo-labels would score agreement with an earlier "
        "model, and re-simulated copies of training maps are not held-out data.")


class SynthConfig(Section):
    """Synthetic training data, generated and cached when data.root is null (see python -m fwi.synth)."""

    families: list[str] = Field(list(FAMILIES), description="Velocity families to generate.")
    samples_per_family: int = Field(12, ge=1, description="Samples generated per family.")
    samples_per_file: int = Field(4, ge=1, description="Samples per .npy file (the competition uses 500; the "
                                  "validation split is drawn by file, so small trees need small files).")
    seed: int = Field(0, description="Seed of the velocity generators.")
    cache_dir: Path = Field(Path("cache/synth"), description="Where generated trees are kept and reused.")
    device: str = Field("auto", description="Simulation device: auto (cuda if present), cpu, cuda, cuda:N.")
    stream_batches: int = Field(0, ge=0, description="On-the-fly batches per training epoch, generated, augmented "
                                "and simulated on the training device, interleaved with the file batches (0: off).")
    stream_augment: bool = Field(True, description="Velocity-space augmentation (warps, blends, flips) of the "
                                 "on-the-fly maps before simulation.")


class NormalizeConfig(Section):
    """Seismic input normalization; its statistics are saved inside every checkpoint."""

    mode: Literal["pixel", "global", "log"] = Field(
        "pixel", description="pixel: per (source, time, receiver) mean/std; global: one mean/std; "
        "log: sign(x) log1p(|x| / global std).")
    cache_dir: Path = Field(Path("cache/stats"), description="Where computed statistics are cached.")


class AugmentConfig(Section):
    """Training augmentation (albumentations + seismic-aware ops); probabilities per sample.

    The GPU configs use the survey flip only. The competition seismic is simulated noise-free, every trace is
    present, and amplitudes carry velocity information (reflection strength follows the velocity contrasts),
    so noise, amplitude scaling and trace dropout teach the network about data it will never see; they stay
    available, off by default, for field-like data.
    """

    flip_p: float = Field(0.5, ge=0, le=1, description="Left-right survey flip (receivers, sources, velocity): "
                          "the one augmentation that keeps the data on the simulator's manifold.")
    noise_p: float = Field(0.0, ge=0, le=1, description="Gaussian trace noise (off: the data are noise-free).")
    noise_std: float = Field(0.02, ge=0, description="Noise std as a fraction of each trace's RMS amplitude.")
    scale_p: float = Field(0.0, ge=0, le=1, description="Amplitude scaling (off: amplitude carries velocity "
                           "information).")
    scale_max: float = Field(1.2, ge=1, description="Largest amplitude factor (log-uniform in [1/x, x]).")
    dropout_p: float = Field(0.0, ge=0, le=1, description="Trace dropout (off: no trace is ever missing in the "
                             "competition data).")
    dropout_fraction: float = Field(0.05, ge=0, le=1, description="Fraction of traces zeroed by trace dropout.")


class InversionNetConfig(Section):
    """The network: InversionNet, OpenFWI's plain conv encoder-decoder (fwi/models/inversionnet.py)."""

    name: Literal["inversionnet"] = Field("inversionnet", description="Registered model name (inversionnet, "
                                          "timm_unet); each model has its own keys.")
    width: int = Field(16, ge=1, description="Channels of the first layer (32 = the published model).")


class TimmUNetConfig(Section):
    """The network: any timm encoder + a U-Net decoder ending at 72x72, cropped to 70x70 (fwi/models/timm_unet.py)."""

    name: Literal["timm_unet"] = Field("timm_unet", description="Registered model name (inversionnet, timm_unet); "
                                       "each model has its own keys.")
    encoder: str = Field("resnet18", description="Any timm model name usable with features_only (e.g. caformer_b36, "
                         "convnext_small, resnet18).")
    layout: Literal["restride", "shots_square", "resize"] = Field(
        "restride", description="How the seismic meets the encoder so its first feature map is 72x72. restride: the "
        "5 shots as channels, time reflection-padded to 1152, the stem's strides kept in time but removed along the "
        "receivers, then an average pool in time (all 70 receivers kept); shots_square: the 5 shots side by side as "
        "one 1000x350 image, resized to a square; resize: the 5 shots as channels, resized to a square.")
    pretrained: bool = Field(False, description="Start the encoder from timm's ImageNet weights: downloaded by timm "
                             "(online), or read from model.encoder_weights. Checkpoints never need them again.")
    encoder_weights: Path | None = Field(
        None, description="Local file of the encoder's pretrained weights (timm's model.safetensors or a .pth "
        "state dict), the offline way to model.pretrained=true; input channels are adapted as timm does.")
    decoder_channels: list[int] = Field(
        [256, 128, 64, 32], min_length=1, description="Channels of the decoder stages, deep to shallow; the last "
        "(encoder levels - 1) entries are used (3 for caformer/convnext, 4 for resnet).")

    @model_validator(mode="after")
    def _weights_need_pretrained(self) -> TimmUNetConfig:
        if self.encoder_weights is not None and not self.pretrained:
            raise ValueError("model.encoder_weights is set but model.pretrained is false: set model.pretrained=true "
                             "to start from that file, or drop model.encoder_weights")
        return self


MODEL_CONFIGS: dict[str, type[Section]] = {"inversionnet": InversionNetConfig, "timm_unet": TimmUNetConfig}
"""The model section's schema for each model name."""
DEFAULT_MODEL = "inversionnet"


def _model_name(value: Any) -> str | None:
    """The model name a model section holds (the default one when it names none)."""
    if isinstance(value, dict):
        return value.get("name", DEFAULT_MODEL)
    return getattr(value, "name", None)


ModelConfig = Annotated[
    Annotated[InversionNetConfig, Tag("inversionnet")] | Annotated[TimmUNetConfig, Tag("timm_unet")],
    Discriminator(_model_name),
]
"""The model section: its keys depend on ``name``, and keys of another model are rejected."""


class LossConfig(Section):
    """Training loss: L1 on velocity (scaled to [0, 1]) plus an optional physics-informed misfit."""

    physics_weight: float = Field(0.0, ge=0, description="lambda of the physics term (0 disables it).")
    physics_fraction: float = Field(0.25, gt=0, le=1, description="Fraction of each batch simulated.")
    physics_every: int = Field(1, ge=1, description="Apply the physics term every k optimizer steps.")
    physics_nt: int = Field(1000, ge=2, le=1000, description="Time steps simulated for the physics term "
                            "(fewer is cheaper: the scheme is causal, so the first nt samples are exact).")


class TrainConfig(Section):
    """The optimisation loop."""

    epochs: int = Field(20, ge=1, description="Passes over the training split.")
    batch_size: int = Field(16, ge=2, description="Samples per optimizer step (per process under torchrun); at "
                            "least 2, as BatchNorm needs two samples to normalise a batch.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    schedule: Literal["cosine", "onecycle", "constant", "constant_cosine"] = Field(
        "cosine", description="LR schedule after warmup, stepped every optimizer step: cosine to lr/100; constant; "
        "constant_cosine: constant for train.constant_fraction of the steps after warmup, then cosine to lr/100; "
        "onecycle: torch's OneCycleLR.")
    constant_fraction: float = Field(0.5, ge=0, le=1, description="constant_cosine: fraction of the steps after "
                                     "warmup held at train.lr before the cosine decay.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Fraction of all steps spent warming up.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm (null: no clipping).")
    accumulate: int = Field(1, ge=1, description="Batches accumulated per optimizer step.")
    ema_decay: float | None = Field(0.99, gt=0, lt=1, description="EMA of weights used for validation (null: off).")
    val_tta: Literal["none", "flip"] = Field(
        "none", description="Test-time augmentation of validation, as predict.tta does it (flip: the mean of the "
        "direct and the flipped-back prediction of the mirrored survey), so the validation score is the score of "
        "what predict submits; flip doubles the validation time.")
    amp: bool = Field(True, description="Mixed precision (autocast) for training and validation; see amp_dtype.")
    amp_dtype: Literal["auto", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs with native bf16 (A100, H100, RTX 30xx+), else fp16 with a "
        "GradScaler (Kaggle's T4 and P100), off on CPU; bf16/fp16 force it (on CPU too, slowly).")
    compile: bool = Field(False, description="torch.compile the model.")
    channels_last: bool = Field(False, description="channels_last memory format (CUDA convolutions).")
    device: str = Field("auto", description="auto (cuda if present), cpu, cuda, cuda:N.")
    workers: int = Field(2, ge=0, description="DataLoader worker processes.")
    out_dir: Path = Field(Path("runs"), description="Run folders go to <out_dir>/<name>/.")
    max_minutes: float | None = Field(None, gt=0, description="Stop after the epoch that passes this budget.")
    plot: bool = Field(True, description="Write a PNG of predictions vs truth every epoch.")
    tensorboard: bool = Field(True, description="Also log to TensorBoard (runs/<name>/tb).")
    wandb: bool = Field(False, description="Also log to Weights & Biases (pip install wandb; see wandb_mode).")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: logs stay in <run>/wandb/ (upload later with wandb sync); online: "
        "streamed to wandb.ai (needs wandb login or WANDB_API_KEY).")
    wandb_project: str = Field("fwi", description="W&B project of the run.")
    wandb_entity: str | None = Field(None, description="W&B team or user (null: your default entity).")


class PredictConfig(Section):
    """Inference on the test set (python -m fwi.predict): ensemble, TTA and the submission CSV.

    Each checkpoint brings its own model, weights and normalization; this section only says how to run them.
    The test folder is data.test_dir.
    """

    checkpoints: list[Path] = Field(
        [], description="Checkpoints to ensemble (runs/<name>/best.pt ...); their predictions are averaged.")
    use_ema: bool = Field(True, description="Use each checkpoint's EMA weights when it holds them.")
    batch_size: int = Field(32, ge=1, description="Test files per forward pass.")
    device: str = Field("auto", description="auto (cuda if present), cpu, cuda, cuda:N.")
    workers: int = Field(2, ge=0, description="DataLoader worker processes reading the test files.")
    amp: bool = Field(True, description="Mixed precision (autocast) for the forward passes; see amp_dtype.")
    amp_dtype: Literal["auto", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs with native bf16, else fp16 (T4, P100), off on CPU; bf16/fp16 "
        "force it. Refinement (refine.*) always simulates in float32.")
    tta: Literal["none", "flip"] = Field(
        "none", description="Test-time augmentation. flip: also predict the left-right flipped survey "
        "(receivers and source order reversed), flip that prediction back along x and average.")
    out: Path | None = Field(None, description="Submission CSV to write (null: submissions/<run>.csv, <run> the "
                             "checkpoints' run names joined by '+'); an existing file needs --force.")
    save_maps: Path | None = Field(
        None, description="Also write every good test file's full 70x70 prediction to <save_maps>/<oid>.npy (float32 "
        "m/s): pseudo-labels for python -m fwi.synth --velocity <save_maps>, or the start of python -m fwi.refine.")
    skip_bad: bool = Field(
        False, description="Unreadable or malformed test files get the fallback prediction (the mean map "
        "of all good files' predictions) and are listed at the end, instead of stopping the run.")
    float_precision: int | None = Field(
        2, ge=0, description="Decimals written per velocity (2: <= 0.005 m/s rounding, a ~20% smaller CSV "
        "than null = full float32 precision).")
    chunk_files: int = Field(
        2048, ge=1, description="Test files buffered per CSV write (bounds memory: 2048 files = 143k rows).")


class RefineConfig(Section):
    """Test-time physics refinement (python -m fwi.refine): start maps + test seismic -> refined maps.

    Each start map (e.g. from predict --save-maps) is refined against its own test seismic by L-BFGS through
    the exact simulator under a prior chosen from the map's structure (fwi.physics.refine): flat layers ->
    layer velocities and depths; faulted layers -> those in each fault block, and one velocity per segmented
    region under a smooth warp (the lower misfit wins); curved layers -> the regions; smooth textures -> a
    smooth correction. A map is never returned with a worse data misfit than its
    start. Cost: max_evals simulations forward + backward per map (~2-4 s each on a 2-core CPU).
    """

    maps: Path | None = Field(None, description="Folder of start maps <oid>.npy, 70 x 70 m/s (predict --save-maps).")
    out: Path | None = Field(None, description="Folder the refined maps <oid>.npy are written to (one atomic write "
                             "per map; maps already there are skipped, so a killed run resumes).")
    submission: Path | None = Field(None, description="Also write this submission CSV from the refined maps "
                                    "(validated against data.test_dir; needs every test file refined).")
    log: Path | None = Field(None, description="Per-map CSV log (null: <out>/refine_log.csv, or "
                             "<out>/refine_log_<i>of<n>.csv for shard i/n).")
    shard: str = Field("0/1", pattern=r"^\d+/\d+$", description="i/n: refine only every n-th test file from the "
                       "i-th (sorted by id, i = 0..n-1), so n processes or machines split the work with no overlap.")
    skip_bad: bool = Field(False, description="A bad map or test file (missing partner, wrong shape, NaN, start "
                           "outside [1500, 4500] m/s) keeps its start map (clipped; not written if unreadable or "
                           "NaN) and is listed at the end, instead of stopping the run.")
    prior: Literal["auto", "layers", "blocks", "regions", "smooth"] = Field(
        "auto", description="auto: routed per map (flat -> layers, faulted -> regions and blocks, the lower misfit "
        "wins, curved -> regions, smooth -> smooth); or force one prior for every map.")
    max_evals: int = Field(16, ge=0, description="Simulations forward + backward per map (0: copy the starts). "
                           "Results are reproducible for a given value.")
    window: int | None = Field(None, ge=2, le=1000, description="Time samples the fit compares (null: per map, "
                               "the slowest column's two-way time to the bottom + 0.15 s).")
    dtype: Literal["float32", "float64"] = Field("float32", description="Simulation precision.")
    max_seconds: float | None = Field(240.0, gt=0, description="Wall-time budget of each fit of a map (faulted maps "
                                      "get two), a safety net (null: none): a fit that hits it keeps its best iterate "
                                      "so far and the map is logged timed_out (its result then depends on the "
                                      "machine's speed). A fit of 16 gradients takes 40-230 s on a 2-core CPU.")
    device: str = Field("auto", description="auto (cuda if present), cpu, cuda, cuda:N.")
    workers: int = Field(0, ge=0, description="Maps refined in parallel, one process each (one CPU thread each "
                         "on the CPU); 0: one per CPU core on the CPU, 1 on a GPU.")


class _Param(_Schema):
    """Base of the ``tune.space`` entries: an unknown key is reported with the valid ones.

    (Not a :class:`Section`: pydantic allows no before-validator on ``type``, the discriminator; the numbers are
    checked for their kind below.)
    """

    _no_coercion = field_validator("low", "high", "step", mode="before", check_fields=False)(_same_kind)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                kind = cls.model_fields["type"].annotation.__args__[0]
                raise ValueError(f"unknown key '{unknown[0]}' for a {kind} parameter; valid keys: "
                                 f"{_section_keys(cls)}")
        return data


class FloatParam(_Param):
    """A float hyperparameter: ``{type: float, low, high, log, step}``."""

    type: Literal["float"] = Field(description="Parameter kind.")
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value (inclusive).")
    log: bool = Field(False, description="Sample log-uniformly (needs low > 0; not with step).")
    step: float | None = Field(None, gt=0, description="Discretisation step from low (null: continuous).")

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class IntParam(_Param):
    """An integer hyperparameter: ``{type: int, low, high, log, step}``."""

    type: Literal["int"] = Field(description="Parameter kind.")
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value (inclusive).")
    log: bool = Field(False, description="Sample log-uniformly (needs low > 0; step must be 1).")
    step: int = Field(1, ge=1, description="Spacing of the values from low.")

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log needs step 1")
        return self


class CategoricalParam(_Param):
    """A choice among values: ``{type: categorical, choices: [...]}`` (values may be lists, e.g. sizes)."""

    type: Literal["categorical"] = Field(description="Parameter kind.")
    choices: list[Any] = Field(min_length=1, description="The values to choose from.")


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must be <= high ({high})")
    if log and low <= 0:
        raise ValueError("log needs low > 0")


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
"""One entry of ``tune.space``, chosen by its ``type``."""


class TuneConfig(Section):
    """Hyperparameter search with Optuna (python -m fwi.tune); each trial is one fwi.train run."""

    space: dict[str, ParamSpec] = Field(
        default_factory=lambda: {
            "train.lr": FloatParam(type="float", low=1e-4, high=3e-3, log=True),
            "train.weight_decay": FloatParam(type="float", low=1e-6, high=1e-2, log=True),
        },
        description="Search space: dotted config key (e.g. train.lr) -> {type: float|int|categorical, low, high, "
        "log, step | choices}. Every other setting comes from the rest of this config. Default: learning rate "
        "and weight decay, log-uniform.")
    n_trials: int = Field(20, ge=1, description="Finished (complete or pruned) trials the study should hold in "
                          "total; a resumed study or an extra worker runs only the missing ones.")
    timeout_s: float | None = Field(None, gt=0, description="This worker starts no new trial after this many "
                                    "seconds (null: no limit).")
    storage: str | None = Field(
        None, description="Optuna storage URL shared by all workers (sqlite:///file.db, postgresql+psycopg2://user@"
        "host/db, mysql+pymysql://...), or env:VAR to read it from environment variable VAR (keeps a password out of "
        "every file); passwords are masked in everything saved or printed. null: "
        "sqlite:///<train.out_dir>/<study>/study.db.")
    sampler_seed: int | None = Field(
        0, description="Seed of the TPE sampler; trial n samples with sampler_seed + n, so a resumed study or a "
        "second worker never replays earlier suggestions (null: unseeded).")
    sampler_startup_trials: int = Field(10, ge=0, description="Random trials before TPE starts modelling.")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stop unpromising trials early from their per-epoch val MAE. median: worse than "
        "the median of earlier trials at the same epoch; hyperband: successive halving brackets; none: never.")
    pruner_startup_trials: int = Field(5, ge=0, description="median: trials never pruned (the baseline).")
    pruner_warmup_epochs: int = Field(1, ge=0, description="Epochs every trial runs before it may be pruned.")
    max_failures: int = Field(5, ge=1, description="A worker stops after this many failed trials in a row "
                              "(a systematic error rather than a bad suggestion).")
    heartbeat_s: int = Field(30, ge=1, description="Running trials record a heartbeat this often; a trial "
                             "silent for 2 x heartbeat_s (its worker was killed) is marked failed and redone.")


class Config(Section):
    """A complete, resolved configuration.

    The defaults are the CPU quickstart (configs/quickstart.yaml): a small synthetic tree, a small InversionNet,
    minutes of training. configs/inversionnet.yaml and configs/convnext_unet.yaml are full-size GPU setups.
    """

    name: str = Field("quickstart", description="Run name: outputs go to <train.out_dir>/<name>/ (one plain folder "
                      "name: letters, digits, '_', '.', '+', '-').")
    seed: int = Field(0, description="Global random seed (model init, data order, augmentation).")
    data: DataConfig = Field(default_factory=DataConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=InversionNetConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError("must be one plain folder name (letters, digits, '_', '.', '+', '-'; no '/', no '..', "
                             "not absolute): outputs go to <train.out_dir>/<name>/")
        return value


def _section_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _variants(annotation: Any) -> dict[str, type[BaseModel]]:
    """Section classes a field may hold: ``{'': cls}`` for a plain section, ``{name: cls, ...}`` for a section whose
    schema depends on its ``name`` (the model section), ``{}`` for a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"": annotation}
    args = [get_args(a)[0] if get_origin(a) is Annotated else a for a in get_args(annotation)]
    if args and all(isinstance(a, type) and issubclass(a, BaseModel) and "name" in a.model_fields for a in args):
        return {a.model_fields["name"].default: a for a in args}
    return {}


def section_class(parent: type[BaseModel], field: str, values: Any = None) -> type[BaseModel] | None:
    """The schema class of section ``field`` of ``parent``, or None when that field holds a value.

    For the model section it is the class of the model ``values`` (a dict or a section) names, the default
    model's when it names none, and the first one's when the name is unknown (validation reports it).
    """
    variants = _variants(parent.model_fields[field].annotation)
    if len(variants) > 1:
        return variants.get(_model_name(values if values is not None else {})) or next(iter(variants.values()))
    return variants.get("")


def _error_path(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """The dotted config path of a validation error location (model-name tags dropped) and the section class
    holding its last key (None below a value, e.g. inside tune.space)."""
    parts: list[str] = []
    model: type[BaseModel] | None = Config
    holder: type[BaseModel] | None = None
    items = [str(p) for p in loc]
    i = 0
    while i < len(items):
        part, holder = items[i], model
        parts.append(part)
        i += 1
        if model is None or part not in model.model_fields:
            model = None
            continue
        variants = _variants(model.model_fields[part].annotation)
        if len(variants) > 1 and i < len(items) and items[i] in variants:
            model = variants[items[i]]
            i += 1
        else:
            model = variants.get("")
    return parts, holder


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for key ``'a.b'``, checking each part against the schema.

    In the model section a key of any model is accepted here, whatever the order of the overrides; the final
    validation rejects keys that do not apply to the chosen ``model.name``.
    """
    parts = key.split(".")
    model: type[BaseModel] = Config
    parent: tuple[type[BaseModel], str] | None = None
    node = tree
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the top level"
        siblings = _variants(parent[0].model_fields[parent[1]].annotation).values() if parent else [model]
        if not any(part in m.model_fields for m in siblings):
            raise ConfigError(f"unknown config key '{key}': '{part}' is not in {where}; "
                              f"valid keys: {_section_keys(model)}")
        holder = next(m for m in siblings if part in m.model_fields)
        child = node.get(part, {})
        section = section_class(holder, part, child if isinstance(child, dict) else None)
        if i == len(parts) - 1:
            if section is None:
                node[part] = value
                return
            # 'train={epochs: 2}' merges into the section (what the file set stays), key by key, checked.
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' is a section: give {key}.<key>=value or a mapping such as "
                                  f"{key}={{{next(iter(section.model_fields))}: ...}}")
            for sub, sub_value in value.items():
                _set_dotted(tree, f"{key}.{sub}", sub_value)
            return
        if section is None:
            raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' is a value, not a section "
                              f"(in override '{key}')")
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' must be a section")
        parent, model, node = (holder, part), section, node.setdefault(part, child)


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=3e-4'`` -> ``('train.lr', 3e-4)``; the value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    parts, holder = _error_path(first["loc"])
    key = ".".join(parts)
    if first["type"] == "union_tag_invalid":
        valid = ", ".join(sorted(_variants(Config.model_fields[parts[0]].annotation)))
        return f"config key '{key}.name' in {source}: unknown model '{first['ctx']['tag']}'; valid: {valid}"
    if first["type"] == "extra_forbidden":
        valid = _section_keys(holder) if holder is not None else "?"
        if holder in MODEL_CONFIGS.values() and any(parts[-1] in m.model_fields for m in MODEL_CONFIGS.values()):
            return (f"config key '{key}' in {source} does not apply to model.name={holder.model_fields['name'].default}"
                    f"; its keys: {valid}")
        return f"unknown config key '{key}' in {source}; valid keys: {valid}"
    got = first.get("input")
    if isinstance(got, dict):  # a whole section failed its own check: the message says what is wrong
        return f"config key '{key}' in {source}: {first['msg']}"
    return f"config key '{key}' in {source}: {first['msg']} (got {got!r})"


Overrides = dict[str, Any] | list[str | tuple[str, Any]]


def load_config(path: str | Path | None = None, overrides: Overrides | None = None) -> Config:
    """Resolve a config: defaults, then the YAML file at ``path``, then the overrides in order.

    ``overrides`` holds ``'section.key=value'`` strings or ``(dotted key, value)`` pairs, or is a dict
    of dotted keys to values.
    Raises :class:`ConfigError` (one line, naming the key or file) on any problem.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = find_config(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            kind = type(loaded).__name__
            raise ConfigError(f"config file {path} must hold a mapping of sections, not a {kind}")
        tree = loaded or {}
        source = str(path)
        try:
            Config.model_validate(tree)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, source)) from None
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = [parse_override(o) if isinstance(o, str) else o for o in overrides or []]
    for key, value in items:
        _set_dotted(tree, key, value)
        source = "overrides" if path is None else f"{path} + overrides"
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


_QUERY_SECRET = re.compile(r"(?i)([?&;](?:password|passwd|pwd|secret|token)=)[^&;]*")


def redact_url(url: str) -> str:
    """``url`` with its password (and password-like query values) replaced by ``***``.

    Does not rely on the URL being valid (a mistyped one is masked too): the user info is everything between
    ``://`` and the last ``@``; the name before its first ``:`` is kept.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    return scheme + sep + _QUERY_SECRET.sub(r"\1***", rest)


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a database error message) with ``url`` and every secret in it masked."""
    text = text.replace(url, redact_url(url))
    rest = url.partition("://")[2] or url
    secrets = [m.group(0).partition("=")[2] for m in _QUERY_SECRET.finditer(rest)]
    if "@" in rest:
        secrets.append(rest.rpartition("@")[0].partition(":")[2])
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON/YAML-ready dict of a config (paths as strings), with ``tune.storage``'s password masked.

    Every config that is saved (config.yaml, best.yaml, checkpoints, W&B) or printed goes through here.
    """
    data = cfg.model_dump(mode="json")
    if data["tune"]["storage"]:
        data["tune"]["storage"] = redact_url(data["tune"]["storage"])
    return data


def flatten_config(model: type[BaseModel], values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted ``(key, value)`` pairs of every leaf field of a config dict, following the schema ``model``."""
    for name in model.model_fields:
        section = section_class(model, name, values[name])
        if section is not None:
            yield from flatten_config(section, values[name], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", values[name]


def packaged_configs() -> Path:
    """The folder of the shipped configs: ``fwi/configs/`` in an installed package, ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def find_config(name: str | Path) -> Path:
    """``name`` if it is a file, else the shipped config of that name (``caformer_unet`` or
    ``caformer_unet.yaml``); a one-line error listing the shipped names otherwise."""
    path = Path(name)
    if path.is_file():
        return path
    if path.parent == Path(".") and path.suffix in ("", ".yaml"):
        shipped = packaged_configs() / f"{path.stem}.yaml"
        if shipped.is_file():
            return shipped
    names = ", ".join(sorted(p.stem for p in packaged_configs().glob("*.yaml"))) or "none found"
    raise ConfigError(f"config file not found: {name} (shipped configs, usable by name: {names})")


def dump_config(cfg: Config) -> str:
    """YAML text of ``cfg``, each field followed by its documentation as a comment."""
    lines: list[str] = []

    def walk(model: type[BaseModel], values: dict[str, Any], indent: int) -> None:
        pad = "  " * indent
        for name, info in model.model_fields.items():
            section = section_class(model, name, values[name])
            if section is not None:
                doc = (section.__doc__ or "").strip().splitlines()[0]
                lines.append(f"{pad}{name}:  # {doc}")
                walk(section, values[name], indent + 1)
                continue
            text = yaml.safe_dump({name: values[name]}, default_flow_style=True, width=10**6).strip()
            comment = f"  # {info.description}" if info.description else ""
            lines.append(f"{pad}{text[1:-1]}{comment}")

    walk(Config, config_to_dict(cfg), 0)
    return "\n".join(lines) + "\n"


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from fwi.io import save_text

    save_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
