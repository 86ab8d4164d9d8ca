import subprocess
import sys

from napari_dustrack.cli import build_parser, main

CONTRACT = ("propagate", "train", "predict", "smooth", "batch", "simulate", "demo")


def test_every_contract_subcommand_is_present():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(CONTRACT) <= set(choices)


def test_console_script_runs_and_reports_errors_on_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_dustrack",
            "smooth",
            str(tmp_path / "missing.mp4"),
            "--tracks",
            str(tmp_path / "missing.csv"),
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-dustrack smooth: error:")


def test_main_returns_2_on_user_error(tmp_path, capsys):
    assert (
        main(
            [
                "propagate",
                str(tmp_path / "v.mp4"),
                "--keyframes",
                str(tmp_path / "k.csv"),
                "--out",
                str(tmp_path / "o.csv"),
            ]
        )
        == 2
    )
    assert "error" in capsys.readouterr().err
