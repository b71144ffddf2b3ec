"""Config: one TOML file, a section per part; defaults with no file; errors are clear."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailsift.config import Config, ConfigError, load_config, override


def test_no_file_gives_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.classifier.required == 5.0
    assert cfg.milter.on_virus == "tag"


def test_sections_are_read_and_lists_become_tuples(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[classifier]\nrequired = 6\n[milter]\non_virus = "reject"\n'
                 'skip_networks = ["10.0.0.0/8"]\n[logging]\nlevel = "DEBUG"\n')
    cfg = load_config(f)
    assert cfg.classifier.required == 6.0 and isinstance(cfg.classifier.required, float)
    assert cfg.milter.on_virus == "reject"
    assert cfg.milter.skip_networks == ("10.0.0.0/8",)
    assert cfg.logging.level == "DEBUG"


@pytest.mark.parametrize("text, message", [
    ("[nosuch]\nx = 1\n", "unknown section"),
    ("[milter]\nbogus = 1\n", "unknown setting"),
    ("[milter]\non_virus = 3\n", "expected a string"),
    ("[milter]\non_virus = \"delete\"\n", "on_virus must be one of"),
    ("[classifier]\nrequired = true\n", "expected a number"),
    ("[milter\n", "not valid TOML"),
])
def test_bad_config_is_refused_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_flags_override_only_when_given() -> None:
    cfg = load_config(None)
    m = override(cfg.milter, socket="unix:/tmp/x.sock", clamd=None)
    assert m.socket == "unix:/tmp/x.sock"
    assert m.clamd == cfg.milter.clamd


def test_cli_reports_a_bad_config_file(tmp_path: Path, mailsift_bin: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[milter]\nbogus = 1\n")
    res = subprocess.run([mailsift_bin, "postfix-config", "--config", str(f)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3
    assert "unknown setting(s) bogus" in res.stderr


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "mailsift.toml.example"
    cfg = load_config(example)
    assert cfg.milter.on_scan_error == "tempfail"
    assert cfg.store.imaps == "0.0.0.0:993"
    assert cfg.policy.db.startswith("sqlite:")
