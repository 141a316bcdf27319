"""The config system: YAML + overrides, exact one-line errors, round trip through --print-config."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fwi.config import MODEL_CONFIGS, Config, dump_config, load_config, save_config, section_class
from fwi.errors import ConfigError


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: fromfile\ndata:\n  val_fraction: 0.25\n  split_seed: 3\n")
    cfg = load_config(path, ["data.split_seed=7", "data.families=[FlatVel_A, Style_B]"])
    assert cfg.name == "fromfile"
    assert cfg.data.val_fraction == 0.25  # from the file
    assert cfg.data.split_seed == 7  # override wins over the file
    assert cfg.data.families == ["FlatVel_A", "Style_B"]  # YAML-parsed list
    assert cfg.data.root is None  # schema default


def test_override_value_types_are_parsed_as_yaml():
    cfg = load_config(None, ["data.root=/some/dir", "seed=12", "data.test_dir=null"])
    assert cfg.data.root == Path("/some/dir")
    assert cfg.seed == 12 and isinstance(cfg.seed, int)
    assert cfg.data.test_dir is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.rooot=1"], "unknown config key 'data.rooot': 'rooot' is not in data; valid keys: root, families, "
                           "val_fraction, split_seed, split_by, test_dir, extra_roots, validate_extra_roots"),
        (["dta.root=1"], "unknown config key 'dta.root': 'dta' is not in the top level; valid keys: name, seed, data, "
                         "synth, normalize, augment, model, loss, train, predict, refine, tune"),
        (["data.val_fraction=abc"], "config key 'data.val_fraction' in overrides: Value error, must be a number, not "
                                    "a string (got 'abc')"),
        (["data.val_fraction=1.5"], "config key 'data.val_fraction' in overrides: Input should be less than 1 "
                                    "(got 1.5)"),
        (["data.root.x=1"], "config key 'data.root' is a value, not a section (in override 'data.root.x')"),
        (["seed"], "override 'seed' is not of the form section.key=value"),
        # strict kinds, finite floats, BatchNorm's two samples, plain run names
        (["train.epochs=true"], "config key 'train.epochs' in overrides: Value error, must be an integer, not a "
                                "boolean (got True)"),
        (["train.lr=.inf"], "config key 'train.lr' in overrides: Input should be a finite number (got inf)"),
        (["train.lr=inf"], "config key 'train.lr' in overrides: Value error, must be a number, not a string "
                           "(got 'inf')"),
        (["train.lr=.nan"], "config key 'train.lr' in overrides: Input should be a finite number (got nan)"),
        (["train.plot=1"], "config key 'train.plot' in overrides: Value error, must be true or false (got 1)"),
        (["train.batch_size=1"], "config key 'train.batch_size' in overrides: Input should be greater than or equal "
                                 "to 2 (got 1)"),
        (["name=../elsewhere"], "config key 'name' in overrides: Value error, must be one plain folder name (letters, "
                                "digits, '_', '.', '+', '-'; no '/', no '..', not absolute): outputs go to "
                                "<train.out_dir>/<name>/ (got '../elsewhere')"),
        (["train=3"], "config key 'train' is a section: give train.<key>=value or a mapping such as "
                      "train={epochs: ...}"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value) == message


@pytest.mark.parametrize("name", ["/abs/run", "a/b", "..", ".hidden", "", "run name"])
def test_run_names_are_plain_folder_names(name):
    with pytest.raises(ConfigError, match="^config key 'name' in overrides: Value error, must be one plain folder"):
        load_config(None, [("name", name)])
    assert load_config(None, ["name=inv_v2.1+flip-tta"]).name == "inv_v2.1+flip-tta"


def test_whole_section_override_merges_into_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.0005\n  epochs: 40\n  batch_size: 8\n")
    cfg = load_config(path, ["train={epochs: 2, workers: 0}"])
    assert (cfg.train.epochs, cfg.train.workers) == (2, 0)  # from the override
    assert (cfg.train.lr, cfg.train.batch_size) == (0.0005, 8)  # kept from the file, not reset to defaults
    with pytest.raises(ConfigError, match=r"^unknown config key 'train.lrr': 'lrr' is not in train; valid keys: "
                                          r"epochs, batch_size, "):
        load_config(path, ["train={epochs: 2, lrr: 1}"])  # each merged key is checked like an override


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  rot: /x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"unknown config key 'data.rot' in {path}; valid keys: root, families, "
                               "val_fraction, split_seed, split_by, test_dir, extra_roots, validate_extra_roots")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope.yaml \(shipped configs, usable by name: "
                                          r"[a-z_, ]*quickstart"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections, not a list$"):
        load_config(tmp_path / "list.yaml")


def test_dump_is_valid_yaml_that_round_trips(tmp_path):
    cfg = load_config(None, ["name=rt", "data.root=/d", "data.families=[CurveFault_B]"])
    assert Config.model_validate(yaml.safe_load(dump_config(cfg))) == cfg
    save_config(cfg, tmp_path / "args.yaml")
    assert load_config(tmp_path / "args.yaml") == cfg
    timm = load_config(None, ["model.name=timm_unet", "model.layout=shots_square", "model.pretrained=true",
                              "model.encoder_weights=/w/enc.pth"])
    text = dump_config(timm)
    assert Config.model_validate(yaml.safe_load(text)) == timm and "width" not in text
    assert "  layout: shots_square  # How the seismic meets the encoder" in text


def test_every_field_is_documented():
    seen = []

    def walk(model):
        for name, info in model.model_fields.items():
            sections = [section_class(model, name, {"name": n}) for n in MODEL_CONFIGS] if name == "model" else \
                [section_class(model, name)]
            if sections[0] is not None:
                for section in sections:
                    assert section.__doc__, f"section {name} has no docstring"
                    seen.append(section)
                    walk(section)
            else:
                assert info.description, f"field {name} of {model.__name__} has no description"

    walk(Config)
    assert set(MODEL_CONFIGS.values()) <= set(seen)  # every model's keys were checked


def test_configs_folder_files_validate():
    for path in sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml")):
        load_config(path)


def test_cli_print_config_and_error_exit():
    ok = subprocess.run([sys.executable, "-m", "fwi.data", "--print-config", "data.split_seed=5"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["data"]["split_seed"] == 5
    bad = subprocess.run([sys.executable, "-m", "fwi.data", "data.nope=1"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: unknown config key 'data.nope': 'nope' is not in data; valid keys: root, families, val_fraction, "
        "split_seed, split_by, test_dir, extra_roots, validate_extra_roots"
    ]


def test_shipped_configs_load_by_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name resolves to the shipped file
    configs = Path(__file__).parents[1] / "configs"
    assert load_config("inversionnet") == load_config("inversionnet.yaml") == load_config(configs / "inversionnet.yaml")
    (tmp_path / "inversionnet.yaml").write_text("name: mine\n")  # a local file of that name wins
    assert load_config("inversionnet.yaml").name == "mine"


def test_quickstart_config_is_the_builtin_default():
    """README promise: `python -m fwi.train` with no arguments runs configs/quickstart.yaml."""
    quickstart = load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml")
    assert quickstart == load_config()
