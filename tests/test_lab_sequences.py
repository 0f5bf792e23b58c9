"""The sequences lab: the LSTM ahead of a vanilla RNN on long temporal order; truncated BPTT needs the carried state."""

from knetpy.examples.labs import run


def test_sequences_lab_quick(tmp_path):
    out = run("sequences", ["--quick", "--no-plot", "--out", str(tmp_path)])
    order = out["order"]
    assert min(order["easy/relu"]) >= 0.95 and min(order["easy/lstm"]) >= 0.95  # both learn the easy level
    assert order["normal/lstm"][0] >= 0.95  # 30-40 steps: the LSTM learns it ...
    assert order["normal/relu"][0] <= 0.5  # ... the vanilla RNN stays near chance (0.25)
    tbptt = out["tbptt"]
    assert tbptt["carried"] >= 0.98
    # Windows started from zeros cannot echo their first 3 steps: ~0.85, the carried state fixes that.
    assert tbptt["reset"] <= 0.9 and tbptt["carried"] - tbptt["reset"] >= 0.08
