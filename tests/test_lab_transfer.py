"""The transfer lab: fine-tuning a pretrained body (parameter groups, lower body rate) beats training from scratch."""

import pytest

from knetpy.examples.labs import transfer

pytest.importorskip("sklearn", reason="the digits come from scikit-learn")


def test_finetuning_beats_training_from_scratch():
    out = transfer.main(["--quick", "--no-plot"])
    assert out["source_acc"] > 0.95
    assert out["finetune"] > out["scratch"] + 0.04, out
    assert out["frozen"] > out["scratch"], out  # even the frozen features beat learning from 50 examples
    assert out["frozen_body_unchanged"]
