"""Base weights of a training run: every part that does not fit is named in one error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.model.sequence import CONFIG_44K_SA
from saganet.state_dict import CheckpointMismatchError
from saganet.training.config import ModelSetup
from saganet.training.models import _debug_base_weights, build_models, load_base_weights

SEQUENCE = CONFIG_44K_SA.with_duration(0.64)
DEBUG = ModelSetup(network="debug", use_lora=True, synchformer="debug", network_init="debug",
                   synchformer_init="debug", codec="debug")


def _files(tmp_path, network: dict, synchformer: dict):
    paths = tmp_path / "net.pth", tmp_path / "synch.pth"
    torch.save(network, paths[0])
    torch.save(synchformer, paths[1])
    return dataclasses.replace(DEBUG, network_init=str(paths[0]),
                               synchformer_init=str(paths[1]))


def test_both_base_files_that_do_not_fit_are_named_in_one_error(tmp_path):
    network, synchformer = (dict(state) for state in _debug_base_weights())
    missing = sorted(network)[0]
    del network[missing]
    reshaped = sorted(synchformer)[-1]
    synchformer[reshaped] = torch.zeros(*synchformer[reshaped].shape, 2)
    setup = _files(tmp_path, network, synchformer)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_base_weights(build_models(setup, SEQUENCE), setup)
    message = str(caught.value)
    assert message.startswith("base weights: 2 of its parts do not match")
    for name in ("net.pth", missing, "synch.pth", reshaped):
        assert name in message


def test_one_base_file_that_does_not_fit_is_raised_as_it_is(tmp_path):
    network, synchformer = (dict(state) for state in _debug_base_weights())
    extra = f"{sorted(synchformer)[0]}_extra"
    synchformer[extra] = torch.zeros(1)
    setup = _files(tmp_path, network, synchformer)
    built = build_models(setup, SEQUENCE)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_base_weights(built, setup)
    message = str(caught.value)
    assert "synch.pth" in message and extra in message and "net.pth" not in message
    # The network's file fitted and was loaded before the error.
    loaded = built.network.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in network.items())
