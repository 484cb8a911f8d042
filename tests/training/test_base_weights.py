"""Base weights of a training run: every part that does not fit is named in one error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.errors import UserInputError
from saganet.model import FlowNetwork
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


@pytest.mark.parametrize("field", ["network_init", "synchformer_init"])
def test_a_base_weights_name_that_is_neither_registered_nor_a_file_is_one_line(tmp_path, field):
    # A typo of a registry name (or a wrong path) ended in torch's FileNotFoundError traceback
    # (after the other file's download); it is refused before either is loaded.
    missing = tmp_path / "mmaudio_smal_44k.pth"
    setup = dataclasses.replace(DEBUG, **{field: str(missing)})
    built = build_models(setup, SEQUENCE)
    before = {k: v.clone() for k, v in built.synchformer.state_dict().items()}
    with pytest.raises(UserInputError) as caught:
        load_base_weights(built, setup)
    # Nothing was loaded: the other file (debug stand-ins) is not half applied.
    assert all(torch.equal(built.synchformer.state_dict()[k], v) for k, v in before.items())
    message = str(caught.value)
    assert f"model.{field}" in message and str(missing) in message
    assert "python -m saganet.weights list" in message and "\n" not in message


def test_model_architecture_changes_the_named_size_without_code(monkeypatch):
    # A new network size took an edit of saganet/model/variants.py; the model group's
    # architecture entry changes the named size's fields, and the weights file records them.
    base = build_models(DEBUG, SEQUENCE).network.config
    changes = {"depth": base.depth + 1, "lora_rank": base.lora_rank // 2}
    built_sizes = []
    build = FlowNetwork.__init__

    def counted(self, config, *args, **kwargs):
        built_sizes.append(config.depth)
        build(self, config, *args, **kwargs)

    # Only the changed size is built (not the named one first: seconds at official sizes).
    monkeypatch.setattr(FlowNetwork, "__init__", counted)
    built = build_models(dataclasses.replace(DEBUG, architecture=changes), SEQUENCE)
    assert built_sizes == [changes["depth"]]
    config = built.network.config
    assert (config.depth, config.lora_rank) == (changes["depth"], changes["lora_rank"])
    assert config.hidden_dim == base.hidden_dim
    assert config.latent_seq_len == SEQUENCE.latent_seq_len
    assert built.weights_file()["config"]["network"]["depth"] == changes["depth"]


@pytest.mark.parametrize(("changes", "named"), [
    ({"depht": 3}, "depht"),                      # a typo: the valid fields are listed
    ({"latent_seq_len": 10}, "latent_seq_len"),   # derived from duration, not set
    ({"num_heads": 3}, "num_heads"),              # 64 wide is not divisible by 3 heads
])
def test_a_wrong_model_architecture_is_one_line(changes, named):
    setup = dataclasses.replace(DEBUG, architecture=changes)
    with pytest.raises(UserInputError) as caught:
        build_models(setup, SEQUENCE)
    message = str(caught.value)
    assert "model.architecture" in message and named in message and "\n" not in message
