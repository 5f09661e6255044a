"""The lock file is the one source of versions; environment.yml mirrors it and CI runs the README's command."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_environment_yml_mirrors_the_lock():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert _pins(pip_section) == lock


def test_top_level_pins_agree_with_the_lock():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    top = _pins((ROOT / "requirements.in").read_text().splitlines())
    assert top and all(lock[name] == version for name, version in top.items())


def test_core_stack_versions():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    assert lock["tensorflow"] == "2.12.1" and lock["nengo-dl"] == "3.6.0" and lock["numpy"] == "1.24.3"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
