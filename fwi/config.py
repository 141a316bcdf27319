"""The project's one configuration system: a typed schema, YAML files, dotted ``key=value`` overrides.

Every CLI resolves its settings the same way: schema defaults, then ``--config FILE.yaml``, then
``section.key=value`` overrides. Unknown keys and wrong types are rejected with a one-line
:class:`~fwi.errors.ConfigError` that names the key and lists the valid ones. The resolved config is
saved with every run and checkpoint, so a result can always be reproduced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fwi.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    split_seed: int = Field(0, description="Seed of the file-grouped train/validation split.")
    test_dir: Path | None = Field(None, description="Folder of test files <oid>.npy (Kaggle's test/).")


class Config(Section):
    """A complete, resolved configuration."""

    name: str = Field("default", description="Run name: outputs go to runs/<name>/.")
    seed: int = Field(0, description="Global random seed (model init, data order, augmentation).")
    data: DataConfig = Field(default_factory=DataConfig)


def _section_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _model_at(path: list[str]) -> type[BaseModel]:
    """The schema class reached by following ``path`` (section names) from :class:`Config`."""
    model: type[BaseModel] = Config
    for part in path:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return model


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for key ``'a.b'``, checking each part against the schema."""
    parts = key.split(".")
    model: type[BaseModel] = Config
    node = tree
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the top level"
        if part not in model.model_fields:
            raise ConfigError(f"unknown config key '{key}': '{part}' is not in {where}; "
                              f"valid keys: {_section_keys(model)}")
        if i == len(parts) - 1:
            node[part] = value
            return
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' is a value, not a section "
                              f"(in override '{key}')")
        model = annotation
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' must be a section")
        node = child


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
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        section = [str(p) for p in first["loc"][:-1]]
        try:
            valid = _section_keys(_model_at(section))
        except (KeyError, AttributeError, TypeError):
            valid = "?"
        return f"unknown config key '{key}' in {source}; valid keys: {valid}"
    got = first.get("input")
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
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
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


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON/YAML-ready dict of a config (paths as strings)."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: Config) -> str:
    """YAML text of ``cfg``, each field followed by its documentation as a comment."""
    lines: list[str] = []

    def walk(model: type[BaseModel], values: dict[str, Any], indent: int) -> None:
        pad = "  " * indent
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                doc = (annotation.__doc__ or "").strip().splitlines()[0]
                lines.append(f"{pad}{name}:  # {doc}")
                walk(annotation, values[name], indent + 1)
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
