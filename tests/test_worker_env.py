"""The torch workers' environment is set in the workers only."""

from __future__ import annotations

import os
import subprocess
import sys

from napari_dustrack.worker_env import WORKER_ENV, prepare_worker, worker_env


def test_worker_env_fills_in_what_the_user_did_not_set():
    assert worker_env({})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert worker_env({"OMP_WAIT_POLICY": "ACTIVE", "A": "1"}) == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "A": "1",
    }
    env: dict = {}
    prepare_worker(env)
    assert env == dict(WORKER_ENV)


def test_importing_the_package_leaves_the_environment_alone():
    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV}
    code = (
        "import os, napari_dustrack.worker_env, napari_dustrack.tracking.flow; "
        "import napari_dustrack.tracking.heatmap; "
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
