"""Audio VAE: weight-norm folding contract, posterior, official sizes, encoder removal."""

from __future__ import annotations

import pytest
import torch

from saganet.codec import VAE, VAE_CONFIGS, VAEConfig
from saganet.codec.distributions import DiagonalGaussianDistribution
from saganet.codec.mp_layers import MPConv1D, normalize


@pytest.fixture
def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAE_CONFIGS["debug"]).eval()


def test_forward_refuses_before_weight_norm_removal(vae: VAE) -> None:
    with pytest.raises(RuntimeError, match="remove_weight_norm"):
        vae.decode(torch.randn(1, 8, 4))


def test_weight_norm_removal_normalises_every_filter_once(vae: VAE) -> None:
    vae.remove_weight_norm()
    once = {k: v.clone() for k, v in vae.state_dict().items()}
    for module in vae.modules():
        if isinstance(module, MPConv1D):
            # Each output filter ends with unit L2 norm (up to the 1e-4 epsilon).
            norms = module.weight.flatten(1).norm(dim=1)
            torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-3, rtol=0)
    vae.remove_weight_norm()
    for key, value in vae.state_dict().items():
        assert torch.equal(value, once[key]), f"{key} changed on a second removal"


def test_decode_and_encode_shapes(vae: VAE) -> None:
    vae.remove_weight_norm()
    with torch.no_grad():
        mel = vae.decode(torch.randn(2, 8, 6))
        posterior = vae.encode(torch.randn(2, 128, 12))
    assert mel.shape == (2, 128, 12)
    assert posterior.mean.shape == posterior.std.shape == (2, 8, 6)


def test_data_statistics_standardise_and_restore(vae: VAE) -> None:
    with torch.no_grad():
        vae.data_mean.normal_()
        vae.data_std.uniform_(0.5, 2.0)
    mel = torch.randn(1, 128, 4)
    torch.testing.assert_close(vae.unnormalize(vae.normalize(mel)), mel)


def test_posterior_statistics_and_seeded_sampling() -> None:
    moments = torch.randn(2, 6, 5) * 3
    moments[:, 3:, 0] = 100.0  # log-variance beyond the clamp
    posterior = DiagonalGaussianDistribution(moments)
    assert torch.equal(posterior.mode(), moments[:, :3])
    assert posterior.logvar.max() == 20.0
    torch.testing.assert_close(posterior.std ** 2, posterior.var)
    first = posterior.sample(torch.Generator().manual_seed(3))
    second = posterior.sample(torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    noise = torch.empty(2, 3, 5).normal_(generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, posterior.mean + posterior.std * noise)


def test_channel_last_posterior_matches_channel_first() -> None:
    moments = torch.randn(2, 6, 5)
    first = DiagonalGaussianDistribution(moments)
    last = DiagonalGaussianDistribution(moments.transpose(1, 2), dim=-1)
    assert torch.equal(last.mean, first.mean.transpose(1, 2))
    assert torch.equal(last.std, first.std.transpose(1, 2))


def test_drop_encoder_removes_keys_and_encode(vae: VAE) -> None:
    vae.remove_weight_norm().drop_encoder()
    assert not any(k.startswith("encoder.") for k in vae.state_dict())
    with pytest.raises(RuntimeError, match="without its encoder"):
        vae.encode(torch.randn(1, 128, 4))


@pytest.mark.parametrize(("mode", "elements"), [("44k", 305_479_938), ("16k", 171_657_378)])
def test_official_sizes(mode: str, elements: int) -> None:
    with torch.device("meta"):
        sd = VAE(VAE_CONFIGS[mode]).state_dict()
    assert len(sd) == 57
    assert sum(t.numel() for t in sd.values()) == elements


def test_normalize_is_pixel_norm_over_channels() -> None:
    x = torch.randn(2, 16, 7)
    rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(normalize(x, dim=1), x / (1e-4 + rms))


def test_config_rejects_unknown_down_level() -> None:
    with pytest.raises(ValueError, match="down_layers"):
        VAEConfig(data_dim=8, embed_dim=2, hidden_dim=4, down_layers=(3,))
