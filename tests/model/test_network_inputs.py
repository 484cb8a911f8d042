"""The flow network's public methods name a feature tensor of the wrong shape in one line."""

from __future__ import annotations

import re

import pytest

MISTAKES = {
    "clip_f channels": ("clip_f", lambda x: x[..., :-1]),
    "clip_f unbatched": ("clip_f", lambda x: x[0]),
    "sync_f channels": ("sync_f", lambda x: x[..., :-1]),
    "text_f channels": ("text_f", lambda x: x[..., :-1]),
    "sync_f other batch": ("sync_f", lambda x: x[:1]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_preprocess_conditions_names_the_wrong_feature(make_network, inputs, tiny_config,
                                                       mistake: str) -> None:
    name, spoil = MISTAKES[mistake]
    features = {key: inputs[key] for key in ("clip_f", "sync_f", "text_f")}
    features[name] = spoil(features[name])
    net = make_network()
    with pytest.raises(ValueError, match=rf"^{name} must be \((B|\d+), \d+, \d+\)") as info:
        net.preprocess_conditions(**features)
    message = str(info.value)
    length = {"clip_f": tiny_config.clip_seq_len, "sync_f": tiny_config.sync_seq_len,
              "text_f": tiny_config.text_seq_len}[name]
    dim = getattr(tiny_config, f"{name[:-2]}_dim")
    assert f"({length}, {dim})" in re.sub(r"\((B|\d+), ", "(", message)
    assert str(tuple(features[name].shape)) in message and "\n" not in message


def test_negative_text_features_of_the_wrong_width_are_named(make_network, inputs) -> None:
    net = make_network()
    with pytest.raises(ValueError, match=r"^negative_text_features must be"):
        net.get_empty_conditions(len(inputs["clip_f"]),
                                 negative_text_features=inputs["text_f"][..., :-1])
