"""bench.sweep_overhead --main-job on a tiny matrix: the sweep as a user runs it, and its bare runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bench.sweep_overhead import main


def test_main_job_times_the_sweep_and_the_sum_of_its_bare_runs(tmp_path: Path, tiny: dict, capsys) -> None:
    tiny["trainer"]["epochs"] = 1
    matrix = {"name": "bench_tiny", "base": tiny, "seeds": [0, 1], "cells": {"a": {}, "b": {"lr": 0.01}}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    main(["--main-job", "--matrix", str(path)])
    out = " ".join(capsys.readouterr().out.split())
    assert "m.yaml: 4 runs" in out
    wall = re.search(r"fresh store\): (\d+) s wall", out)
    ratio = re.search(r"takes (\d+\.\d+)x their sum", out)
    assert wall and ratio and float(ratio.group(1)) > 0, out
