"""Strict config: defaults, overrides, one-line errors naming the key, stable hashes."""

import pytest

from ctfrpu.config import RunConfig, parse_value, resolve, validate
from ctfrpu.errors import CtfrpuError


def test_defaults_are_the_gokmen_vlasov_baseline():
    cfg = RunConfig()
    assert cfg.model.hidden == [256, 128]
    assert cfg.model.activation == "sigmoid"
    assert cfg.optim.lr == 0.01 and cfg.optim.batch_size == 1
    assert cfg.device.kind == "fp" and cfg.data.dataset == "mnist"


@pytest.mark.parametrize("data, key", [
    ({"optim": {"epochs": -1}}, "optim.epochs"),
    ({"optim": {"lr": float("nan")}}, "optim.lr"),
    ({"optim": {"lr": float("inf")}}, "optim.lr"),
    ({"data": {"dataset": "cifar"}}, "data.dataset"),
    ({"optim": {"momentum": 0.9}}, "optim.momentum"),
    ({"bogus": 1}, "bogus"),
    ({"pulses": {"gap": "-1us"}}, "pulses.gap"),
    ({"pulses": {"gap": "1 parsec"}}, "pulses.gap"),
    ({"pulses": {"n": 0}}, "pulses.n"),
    ({"model": {"hidden": [0]}}, "model.hidden"),
])
def test_bad_values_are_one_line_errors_naming_the_key(data, key):
    with pytest.raises(CtfrpuError) as err:
        validate(data)
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_units_are_parsed():
    cfg = validate({"pulses": {"gap": "2us", "t_on": "1ms", "pw": "500ns"}})
    assert cfg.pulses.gap == pytest.approx(2e-6)
    assert cfg.pulses.t_on == pytest.approx(1e-3)
    assert cfg.pulses.pw == pytest.approx(5e-7)


def test_file_then_overrides_then_sets(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('seed = 3\n[optim]\nepochs = 7\nlr = 0.02\n[data]\ndataset = "fashion"\n')
    cfg = resolve(f, {"optim.epochs": 2}, ["optim.lr=0.05", "model.hidden=[32, 16]"])
    assert (cfg.seed, cfg.optim.epochs, cfg.optim.lr, cfg.data.dataset) == (3, 2, 0.05, "fashion")
    assert cfg.model.hidden == [32, 16]


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(CtfrpuError, match="invalid TOML"):
        resolve(bad)
    with pytest.raises(CtfrpuError, match="not found"):
        resolve(tmp_path / "missing.toml")
    with pytest.raises(CtfrpuError, match="key=value"):
        resolve(None, None, ["novalue"])


def test_hash_ignores_labels_and_tracks_content():
    a = validate({"name": "x", "sweep": "s"})
    b = validate({})
    c = validate({"seed": 1})
    assert a.hash() == b.hash() != c.hash()
    assert validate(a.to_dict()).hash() == a.hash()  # round trip


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("1us") == "1us" and parse_value("[1, 2]") == [1, 2]


@pytest.mark.parametrize("name", ["a\nb", "red\x1b[31m", "tab\there", "c1\x9b"])
def test_run_labels_refuse_control_characters(name):
    """Names are printed in `runs list` and logs: a newline or an escape sequence would forge rows."""
    with pytest.raises(CtfrpuError, match="control characters"):
        validate({"name": name})
    assert validate({"name": "N = 1000, t_gap 0.1 µs"}).name == "N = 1000, t_gap 0.1 µs"


def test_a_json_run_config_is_named_as_such(tmp_path):
    from ctfrpu.config import load_toml

    p = tmp_path / "c.json"
    p.write_text('{"optim": {"lr": 0.1}}')
    with pytest.raises(CtfrpuError, match="TOML .this looks like JSON"):
        load_toml(p)
