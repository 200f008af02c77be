"""scripts/plot_loss.py: matplotlib is optional (without it the curve is drawn as text); bad logs end in one line."""
import json
import sys

import pytest

from scripts.plot_loss import MISSING_MATPLOTLIB, main


def write_log(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_without_matplotlib_the_curve_is_drawn_as_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    losses = [8.0 * 0.9 ** i for i in range(40)]  # falling: the first point is the top row, the last the bottom
    log = write_log(tmp_path / "run_64.log.jsonl", [{"step": 5 * (i + 1), "loss": v} for i, v in enumerate(losses)])
    main([log, "--out", str(tmp_path / "loss.png")])
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if "|" in r]
    assert rows[0].startswith(f"{max(losses):8.3f} |*") and rows[-1].startswith(f"{min(losses):8.3f} |")
    assert rows[-1].endswith("*") and "step 5" in out and "step 200" in out
    assert sum(r.count("*") for r in rows) == 60  # one point in each of the 60 columns
    assert MISSING_MATPLOTLIB in out and "requirements-plot.txt" in MISSING_MATPLOTLIB
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
