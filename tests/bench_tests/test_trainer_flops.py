"""The convolution ceiling of ``bench/trainer_flops.py`` times the step's own convolutions, all of them."""

from __future__ import annotations

import pytest
import torch

from bench.trainer_flops import conv_calls, convs_alone, step_flops
from model.config import RunConfig
from model.trainer import Trainer


@pytest.mark.parametrize("same_domain_use_skip", [True, False])
def test_captured_convolutions_are_the_whole_step(tiny, same_domain_use_skip):
    tiny["trainer"]["same_domain_use_skip"] = same_domain_use_skip
    trainer = Trainer(RunConfig.model_validate(tiny))
    calls = conv_calls(trainer)
    flops, seconds = convs_alone(calls, torch.device("cpu"), trainer.autocast(), repeats=1)
    # every FLOP of a training step is a convolution's, so the ceiling's work is the step's work
    assert flops == step_flops(trainer)
    assert seconds > 0
    # the image enters the first convolution without needing a gradient; deeper inputs need one
    assert not calls[0].input_grad and all(c.input_grad for c in calls[1:] if c.input[1] > 1)
    assert all(c.channels_last for c in calls if c.input[1] > 1)


def test_first_captured_convolution_is_the_encoders_on_both_domains(tiny):
    trainer = Trainer(RunConfig.model_validate(tiny))
    first = conv_calls(trainer)[0]
    batch, size = tiny["trainer"]["batch_size"], tiny["data"]["size"]
    assert first.input == (2 * batch, 1, size, size)  # both domains in one encoder pass
    assert first.weight == tuple(trainer.model.encoder.inc.conv1.weight.shape)
    x, w, b = first.tensors(torch.device("cpu"))
    assert first(x, w, b).shape == (2 * batch, first.weight[0], size, size)
