"""scripts/plot_loss.py: matplotlib is optional, so its absence and bad logs end in one line, not a traceback."""
import json
import sys

import pytest

from scripts.plot_loss import MISSING_MATPLOTLIB, main


def write_log(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_without_matplotlib_it_names_the_optional_requirements_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    log = write_log(tmp_path / "run_64.log.jsonl", [{"step": 1, "loss": 2.0}])
    with pytest.raises(SystemExit) as exit_info:
        main([log, "--out", str(tmp_path / "loss.png")])
    assert exit_info.value.code == MISSING_MATPLOTLIB and "requirements-plot.txt" in MISSING_MATPLOTLIB
    assert not (tmp_path / "loss.png").exists()


@pytest.mark.parametrize("line", ["{not json", '{"step": 3}', '["step", "loss"]'])
def test_a_bad_log_line_is_named(tmp_path, line):
    log = tmp_path / "run_64.log.jsonl"
    log.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="line 2 is not a metrics record"):
        main([str(log), "--out", str(tmp_path / "loss.png")])


def test_plots_each_log_into_one_png(tmp_path):
    pytest.importorskip("matplotlib")
    logs = [write_log(tmp_path / f"{name}_64.log.jsonl", [{"step": s, "loss": 3.0 / s} for s in range(1, 6)])
            for name in ("pretrain", "full_sft")]
    main([*logs, "--out", str(tmp_path / "plots" / "loss.png")])
    assert (tmp_path / "plots" / "loss.png").read_bytes().startswith(b"\x89PNG")
