"""The quick-start demo learns: every pattern gets its own detector, and consolidation shows;
and the README's main job (the demo on the virtual board) prints what the golden model prints."""

import re

from plasticore.host import demo


def test_demo_learns_the_four_patterns(capsys):
    assert demo.main(["--backend", "model", "--epochs", "30"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 patterns have a detector of their own" in out
    selectivity = int(re.search(r"fires (\d+)% of the spikes", out).group(1))
    assert selectivity >= 90
    own, other = map(float, re.search(
        r"onto its own detector: ([\d.]+); of all other synapses: ([\d.]+)", out).groups())
    assert own > other  # consolidation favours the synapses that keep winning


def test_demo_before_learning_is_not_already_selective(capsys):
    assert demo.main(["--backend", "model", "--epochs", "0"]) == 0
    out = capsys.readouterr().out
    selectivity = int(re.search(r"fires (\d+)% of the spikes", out).group(1))
    assert selectivity < 70


def _results(out):
    """Everything the demo prints but its timing and the backend's name."""
    return [line for line in out.splitlines()
            if not line.startswith(("learned for", "plasticore demo on backend"))]


def test_demo_runs_on_the_virtual_board_by_default_with_a_progress_bar(capsys):
    assert demo.main(["--epochs", "2"]) == 0
    sim = capsys.readouterr()
    assert "plasticore demo on backend 'sim'" in sim.out
    assert re.search(r"learning: 100%.*8/8", sim.err), sim.err[-300:]
    assert demo.main(["--backend", "model", "--epochs", "2", "--no-progress"]) == 0
    model = capsys.readouterr()
    assert "learning" not in model.err
    assert _results(sim.out) == _results(model.out)
    assert "counters:" in sim.out
