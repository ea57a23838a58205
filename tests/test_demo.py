"""The quick-start demo learns: every pattern gets its own detector, and consolidation shows."""

import re

from plasticore.host import demo


def test_demo_learns_the_four_patterns(capsys):
    assert demo.main(["--epochs", "30"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 patterns have a detector of their own" in out
    selectivity = int(re.search(r"fires (\d+)% of the spikes", out).group(1))
    assert selectivity >= 90
    own, other = map(float, re.search(
        r"onto its own detector: ([\d.]+); of all other synapses: ([\d.]+)", out).groups())
    assert own > other  # consolidation favours the synapses that keep winning


def test_demo_before_learning_is_not_already_selective(capsys):
    assert demo.main(["--epochs", "0"]) == 0
    out = capsys.readouterr().out
    selectivity = int(re.search(r"fires (\d+)% of the spikes", out).group(1))
    assert selectivity < 70
