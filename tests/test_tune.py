"""Optuna tuning: pruning, failures, resume, stale trials, outputs (scripted fake training); real tiny studies
through the CLI, on SQLite and with two workers sharing a throwaway PostgreSQL server."""

from __future__ import annotations

import math
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import polars as pl
import pytest
import yaml
from optuna.trial import TrialState

import fwi.tune as tune_mod
from fwi.config import load_config
from fwi.errors import ConfigError, FwiError
from fwi.train import train
from fwi.tune import SURPLUS, Objective, main, open_storage, tune

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "model.width": {"type": "categorical", "choices": [2, 4]},
    "data.families": {"type": "categorical", "choices": [["FlatVel_A"], ["FlatVel_A", "CurveFault_A"]]},
}
TINY = ["model.width=2", "train.batch_size=2", "train.workers=0", "train.tensorboard=false", "train.plot=false",
        "data.val_fraction=0.5"]


def fake_cfg(tmp_path, *extra, space=SPACE):
    return load_config(None, [("tune.space", space), f"train.out_dir={tmp_path / 'runs'}", "data.root=/data/kaggle",
                              "seed=7", "tune.pruner_startup_trials=1", "tune.pruner_warmup_epochs=0", *extra])


class FakeTrain:
    """Stands in for fwi.train.train: per trial number, val MAEs to report per epoch, or an exception to raise."""

    def __init__(self, script=None, default=(100.0, 90.0, 80.0)):
        self.script, self.default, self.configs = script or {}, default, []

    def __call__(self, cfg, *, resume=False, on_epoch=None, progress=True):
        self.configs.append(cfg)
        action = self.script.get(int(cfg.name.rsplit("_", 1)[1]), self.default)
        if isinstance(action, BaseException):
            raise action
        for epoch, value in enumerate(action):
            on_epoch(epoch, value)
        return min(action)


def states(study):
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_study_prunes_records_failures_and_writes_best_config(tmp_path, monkeypatch):
    fake = FakeTrain({
        0: [100.0, 90.0, 80.0],
        1: [500.0, 400.0, 300.0],                       # worse than the median at epoch 0: pruned
        2: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        3: [100.0, math.nan],                           # diverged
        4: FwiError("the training split has 5 samples: too few for train.batch_size=64"),
        5: [90.0, 80.0, 70.0],
        6: [85.0, 75.0, 65.0],
    })
    monkeypatch.setattr(tune_mod, "train", fake)
    cfg = fake_cfg(tmp_path, "tune.n_trials=4")
    study = tune(cfg, "s")

    assert states(study) == ["COMPLETE", "PRUNED", "FAIL", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].last_step == 0  # pruned right after its first epoch
    reasons = [t.user_attrs.get("fail_reason") for t in study.trials]
    assert reasons[2] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert reasons[3] == "TrialDiverged: val MAE is nan after epoch 1 (training diverged)"
    assert reasons[4].startswith("FwiError: the training split has 5 samples")
    # Every trial trained the base config + its suggestions, in its own run folder, with its own seed.
    assert [c.name for c in fake.configs] == [f"trial_{n}" for n in range(7)]
    assert {c.train.out_dir for c in fake.configs} == {tmp_path / "runs" / "s"}
    assert [c.seed for c in fake.configs] == [7 + n for n in range(7)]
    for c, t in zip(fake.configs, study.trials, strict=True):
        assert c.train.lr == t.params["train.lr"] and c.model.width == t.params["model.width"]
        assert c.data.families == yaml.safe_load(t.params["data.families"])
        assert c.data.root == Path("/data/kaggle")
        assert t.user_attrs["run_dir"] == str(tmp_path / "runs" / "s" / f"trial_{t.number}")
    assert len({c.train.lr for c in fake.configs}) == 7  # seeded per trial: no suggestion replayed

    out = tmp_path / "runs" / "s"
    best = load_config(out / "best.yaml")
    assert study.best_trial.number == 6
    assert best.name == "s-best" and best.seed == 7 and best.data.root == Path("/data/kaggle")
    assert best.train.lr == study.trials[6].params["train.lr"] and best.model.width == fake.configs[6].model.width
    assert best.data.families == fake.configs[6].data.families
    table = pl.read_csv(out / "trials.csv")
    assert table["state"].to_list() == states(study) and table["val_mae"][6] == 65.0
    assert table["fail_reason"][2].startswith("RuntimeError") and table["epochs"].to_list() == [3, 1, 0, 1, 0, 3, 3]
    assert {"param_train.lr", "param_model.width", "param_data.families", "worker"} <= set(table.columns)
    assert (out / "history.png").stat().st_size > 0 and (out / "importance.png").stat().st_size > 0
    assert (out / "study.db").is_file()


def test_resume_runs_only_the_missing_trials(tmp_path, monkeypatch):
    fake = FakeTrain({1: KeyboardInterrupt()})
    monkeypatch.setattr(tune_mod, "train", fake)
    with pytest.raises(KeyboardInterrupt):  # interrupted during trial 1
        tune(fake_cfg(tmp_path, "tune.n_trials=3"), "r")
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'runs' / 'r' / 'study.db'}")
    assert states(study) == ["COMPLETE", "FAIL"] and study.trials[1].user_attrs["fail_reason"] == "interrupted"
    assert (tmp_path / "runs" / "r" / "best.yaml").is_file()  # outputs are written even when interrupted

    assert states(tune(fake_cfg(tmp_path, "tune.n_trials=2"), "r")) == ["COMPLETE", "FAIL", "COMPLETE"]
    study = tune(fake_cfg(tmp_path, "tune.n_trials=3"), "r")
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert [c.name for c in fake.configs] == ["trial_0", "trial_1", "trial_2", "trial_3"]
    tune(fake_cfg(tmp_path, "tune.n_trials=3"), "r")  # already complete: trains nothing
    assert len(fake.configs) == 4


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_of_a_killed_worker_is_failed_after_its_heartbeat_stops(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tune_mod, "train", FakeTrain())
    cfg = fake_cfg(tmp_path, "tune.n_trials=1", "tune.heartbeat_s=1")
    url = tune_mod.storage_url(cfg, "k")
    dead = optuna.create_study(study_name="k", storage=open_storage(url, 1))
    trial = dead.ask()  # a worker took a trial, sent one heartbeat, then was killed
    dead._storage.record_heartbeat(trial._trial_id)
    started = time.monotonic()
    study = tune(cfg, "k")
    assert states(study) == ["FAIL", "COMPLETE"]
    assert 1.5 < time.monotonic() - started < 60
    assert "waiting for 1 running trial(s) of other workers" in capsys.readouterr().out
    table = pl.read_csv(tmp_path / "runs" / "k" / "trials.csv")
    assert table["fail_reason"][0] == "no reason recorded (its worker died or was killed)"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_started_when_the_study_is_full_trains_nothing(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(tune_mod, "train", fake)
    cfg = fake_cfg(tmp_path, "tune.n_trials=1")
    study = optuna.create_study(study_name="x", storage=open_storage(tune_mod.storage_url(cfg, "x"), 30))
    study.ask()  # another worker's running trial 0 fills the study
    late = study.ask()
    with pytest.raises(Exception, match="surplus"):
        Objective(cfg, "x")(late)
    assert late.user_attrs["fail_reason"] == SURPLUS and fake.configs == []


def test_worker_stops_after_max_failures_in_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_mod, "train", FakeTrain(default=ValueError("bad")))
    cfg = fake_cfg(tmp_path, "tune.n_trials=5", "tune.max_failures=3")
    with pytest.raises(FwiError, match=r"^3 trials failed in a row \(tune.max_failures=3\); last trial 2: "
                                       r"ValueError: bad; stopping this worker"):
        tune(cfg, "f")
    assert pl.read_csv(tmp_path / "runs" / "f" / "trials.csv")["state"].to_list() == ["FAIL"] * 3
    assert not (tmp_path / "runs" / "f" / "best.yaml").exists()


def test_timeout_stops_starting_trials(tmp_path, monkeypatch, capsys):
    fake = FakeTrain()
    monkeypatch.setattr(tune_mod, "train", lambda cfg, **kw: (time.sleep(0.3), fake(cfg, **kw))[1])
    study = tune(fake_cfg(tmp_path, "tune.n_trials=5", "tune.timeout_s=0.1"), "t")
    assert states(study) == ["COMPLETE"]
    assert "tune.timeout_s=0.1 reached with 1 of 5 trials finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lrr": {"type": "float", "low": 0.1, "high": 0.2}},
         "tune.space key 'train.lrr': unknown config key 'train.lrr': 'lrr' is not in train; valid keys: epochs, "),
        ({"trian.lr": {"type": "float", "low": 0.1, "high": 0.2}},
         "tune.space key 'trian.lr': unknown config key 'trian.lr': 'trian' is not in the top level; valid keys: "),
        ({"train.lr": {"type": "float", "low": 0.0, "high": 0.2}},
         "tune.space key 'train.lr': config key 'train.lr' in overrides: Input should be greater than 0 (got 0.0)"),
        ({"train.schedule": {"type": "categorical", "choices": ["cosine", "linear"]}},
         "tune.space key 'train.schedule': config key 'train.schedule' in overrides: Input should be 'cosine', "),
        ({"seed": {"type": "int", "low": 0, "high": 3}}, "tune.space key 'seed' cannot be tuned: "),
        ({"model.encoder": {"type": "categorical", "choices": ["resnet18"]}},
         "tune.space key 'model.encoder': config key 'model.encoder' in overrides does not apply to "
         "model.name=inversionnet; its keys: name, width"),
        ({}, "tune.space is empty: declare the hyperparameters to search"),
    ],
)
def test_bad_space_is_a_one_line_error(space, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        tune(fake_cfg(tmp_path, space=space), "bad")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_bad_space_spec_is_rejected_by_the_schema():
    with pytest.raises(ConfigError, match=r"^config key 'tune.space.train.lr.float' in overrides: Value error, "
                                          r"unknown key 'choices' for a float parameter; valid keys: type, low, high"):
        load_config(None, [("tune.space", {"train.lr": {"type": "float", "low": 1, "high": 2, "choices": [1]}})])
    with pytest.raises(ConfigError, match=r"low \(2.0\) must be <= high \(1.0\)"):
        load_config(None, [("tune.space", {"train.lr": {"type": "float", "low": 2, "high": 1}})])
    with pytest.raises(ConfigError, match="log needs low > 0"):
        load_config(None, [("tune.space", {"model.width": {"type": "int", "low": 0, "high": 8, "log": True}})])


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tune": {"space": {"train.nope": {"type": "int", "low": 1, "high": 2}}}}))
    assert main(["--config", str(path), "--study", "s", f"train.out_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tune.space key 'train.nope': unknown config key"), err
    assert main(["--config", str(path), "--study", "a/b"]) == 1
    assert capsys.readouterr().err.startswith("error: study name 'a/b' must be letters, digits")


def test_model_keys_of_the_chosen_model_can_be_tuned(tmp_path):
    space = {"model.layout": {"type": "categorical", "choices": ["restride", "shots_square"]},
             "model.decoder_channels": {"type": "categorical", "choices": [[64, 32], [32, 16]]}}
    cfg = fake_cfg(tmp_path, "model.name=timm_unet", "model.encoder=resnet10t", space=space)
    tune_mod.check_space(cfg)
    trial = tune_mod.with_overrides(cfg, [("model.layout", "shots_square"), ("model.decoder_channels", [32, 16])])
    assert trial.model.layout == "shots_square" and trial.model.encoder == "resnet10t"


def test_example_config_is_valid():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "tune_example.yaml")
    tune_mod.check_space(cfg)
    assert cfg.tune.space


# --- the storage password never reaches a file or the console ------------------------------------------------

SECRET = "hunter2-Xq9"
SECRET_URL = f"postgresql+psycopg2://tuner:{SECRET}@dbhost:5432/optuna"


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.parametrize("route", ["inline", "env"])
def test_storage_password_is_in_no_file_and_no_printed_line(kaggle_tree, tmp_path, monkeypatch, capsys, route):
    """A real tiny study through the CLI; the database is a SQLite file standing in for the PostgreSQL URL."""
    opened = []

    def sqlite_instead(url, heartbeat_s, **kw):
        opened.append(url)
        return open_storage(f"sqlite:///{tmp_path / 'stand_in.db'}", heartbeat_s, **kw)

    monkeypatch.setattr(tune_mod, "open_storage", sqlite_instead)
    monkeypatch.setenv("FWI_OPTUNA_STORAGE", SECRET_URL)
    storage = SECRET_URL if route == "inline" else "env:FWI_OPTUNA_STORAGE"
    config = write_tiny_config(tmp_path / "tune.yaml", kaggle_tree, tmp_path)
    assert main(["--config", str(config), "--study", "pw", "--storage", storage, "--n-trials", "1",
                 "train.epochs=1", "train.wandb=false"]) == 0
    assert opened == [SECRET_URL]  # the real URL did reach the storage
    out = capsys.readouterr()
    runs = tmp_path / "runs"
    assert (runs / "pw" / "best.yaml").is_file() and (runs / "pw" / "trial_0" / "last.pt").is_file()
    assert files_holding(runs, SECRET) == [] and SECRET not in out.out + out.err
    assert "study 'pw' in postgresql+psycopg2://tuner:***@dbhost:5432/optuna" in out.out
    saved = load_config(runs / "pw" / "trial_0" / "config.yaml").tune.storage
    assert saved == ("postgresql+psycopg2://tuner:***@dbhost:5432/optuna" if route == "inline" else storage)
    with pytest.raises(SystemExit):
        main(["--print-config", "--storage", storage])
    printed = capsys.readouterr().out
    assert SECRET not in printed and "storage: " in printed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql//tuner:{SECRET}@dbhost/optuna",
         "error: invalid storage URL postgresql//tuner:***@dbhost/optuna: "),
        (f"mysql+pymysql://tuner:{SECRET}@dbhost/optuna",
         "error: storage mysql+pymysql://tuner:***@dbhost/optuna needs the database driver 'pymysql', which is not "
         "installed: pip install pymysql, or name an installed driver in the URL (PostgreSQL: "
         "postgresql+psycopg2://...)"),
        (f"postgresql+psycopg2://tuner:{SECRET}@127.0.0.1:1/optuna?connect_timeout=2",
         "error: cannot open storage postgresql+psycopg2://tuner:***@127.0.0.1:1/optuna?connect_timeout=2: "),
        ("postgresql+psycopg2://tuner:***@dbhost/optuna", "error: tune.storage holds a masked password"),
        ("env:FWI_NOT_SET",
         "error: tune.storage is env:FWI_NOT_SET but the environment variable FWI_NOT_SET is not set"),
    ],
)
def test_bad_storage_is_one_line_without_the_password(url, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FWI_NOT_SET", raising=False)
    monkeypatch.setattr(tune_mod.time, "sleep", lambda s: None)  # no retry pauses
    assert main(["--study", "s", "--storage", url, f"train.out_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(message) and SECRET not in err[0], err


def test_redact_url_masks_even_unparsable_urls():
    from fwi.config import redact_url, scrub

    assert redact_url("postgresql://u:p@ss:w@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("mysql://u@h/db?password=zz&x=1") == "mysql://u@h/db?password=***&x=1"
    assert redact_url("u:pw@h/db") == "u:***@h/db" and redact_url("sqlite:///runs/s/study.db") == "sqlite:///runs/s/study.db"
    assert scrub("could not parse 'postgresql//u:pw1@h' (pw1)", "postgresql//u:pw1@h") == (
        "could not parse 'postgresql//u:***@h' (***)")


# --- real training --------------------------------------------------------------------------------------------

def write_tiny_config(path: Path, tree, tmp_path: Path, **tune_section) -> Path:
    tree_cfg = load_config(None, [f"data.root={tree.root}", f"train.out_dir={tmp_path / 'runs'}",
                                  f"normalize.cache_dir={tmp_path / 'stats'}", *TINY])
    data = {k: v for k, v in tree_cfg.model_dump(mode="json").items() if k in ("data", "normalize", "model", "train")}
    data["tune"] = {"space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}, **tune_section}
    path.write_text(yaml.safe_dump(data))
    return path


def child_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_cli_runs_a_real_study_and_its_best_config_trains(kaggle_tree, tmp_path):
    config = write_tiny_config(tmp_path / "tune.yaml", kaggle_tree, tmp_path)
    out = subprocess.run([sys.executable, "-m", "fwi.tune", "--config", str(config), "--study", "s", "--n-trials", "2",
                          "train.epochs=1"], capture_output=True, text=True, timeout=300, env=child_env())
    assert out.returncode == 0, out.stdout + out.stderr
    study_dir = tmp_path / "runs" / "s"
    table = pl.read_csv(study_dir / "trials.csv")
    assert table["state"].to_list() == ["COMPLETE", "COMPLETE"]
    assert (study_dir / "trial_0" / "best.pt").is_file() and (study_dir / "trial_1" / "metrics.csv").is_file()
    assert (study_dir / "history.png").is_file() and (study_dir / "importance.png").is_file()
    best = table.sort("val_mae")["param_train.lr"][0]
    cfg = load_config(study_dir / "best.yaml", ["train.epochs=1"])
    assert cfg.name == "s-best" and cfg.train.lr == pytest.approx(best) and cfg.data.root == kaggle_tree.root
    assert math.isfinite(train(cfg, progress=False))
    assert (tmp_path / "runs" / "s-best" / "best.pt").is_file()


# --- PostgreSQL: several workers on one study -----------------------------------------------------------------

def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server (Debian's packages) on 127.0.0.1; yields the SQLAlchemy URL of a fresh database.

    PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` system user (in a
    temporary folder it owns). The server is stopped and its folder removed afterwards, even on failure.
    """
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install -e '.[test]'")
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "initdb").is_file():
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; .ci/run installs it)")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start the server as 'postgres'")
        prefix = [shutil.which("runuser"), "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="fwi-pg-"))  # under /tmp: reachable by the postgres user
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", _free_port()

    def run(tool, *args, check=True):
        return subprocess.run([*prefix, str(bindir / tool), *args], capture_output=True, text=True, timeout=120,
                              cwd=base, check=check)

    started = False
    try:
        try:
            run("initdb", "-D", str(data), "-U", "fwi", "-A", "trust", "-E", "UTF8", "--no-sync")
            started = True
            run("pg_ctl", "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off "
                "-c full_page_writes=off", "start")
            run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "fwi", "fwi_tune")
        except subprocess.CalledProcessError as exc:
            log = (base / "server.log").read_text() if (base / "server.log").is_file() else ""
            pytest.fail(f"could not start PostgreSQL: {exc.cmd}: {exc.stderr}\n{log}")
        # With a password (the server trusts local connections and ignores it): it must never be saved or printed.
        yield f"postgresql+psycopg2://fwi:{SECRET}@127.0.0.1:{port}/fwi_tune"
    finally:
        if started:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(postgres_url, kaggle_tree, tmp_path):
    config = write_tiny_config(tmp_path / "tune.yaml", kaggle_tree, tmp_path, pruner="none")
    command = [sys.executable, "-m", "fwi.tune", "--config", str(config), "--study", "pg", "--n-trials", "4",
               "train.epochs=2", "--storage"]
    env = {**child_env(), "FWI_OPTUNA_STORAGE": postgres_url}  # one worker reads it there, the other gets it inline
    workers = [subprocess.Popen([*command, storage], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env) for storage in ("env:FWI_OPTUNA_STORAGE", postgres_url)]
    try:
        logs = [w.communicate(timeout=400)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(logs)
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert len(finished) == 4 and len(set(numbers)) == len(numbers)
    by_worker = {t.user_attrs["worker"] for t in finished}
    assert by_worker == {f"{socket.gethostname()}:{w.pid}" for w in workers}, "\n\n".join(logs)
    assert (tmp_path / "runs" / "pg" / "best.yaml").is_file()
    assert len({t.user_attrs["run_dir"] for t in finished}) == 4
    assert files_holding(tmp_path / "runs", SECRET) == [] and not any(SECRET in log for log in logs)
