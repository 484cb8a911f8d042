"""Comparison helpers shared by the golden-case handlers."""

from __future__ import annotations

from collections.abc import Mapping

import torch

ATOL = 1e-5
RTOL = 1e-5


def assert_close(
    name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL, rtol: float = RTOL
) -> None:
    """Assert ``actual`` matches ``expected`` in shape, dtype class and value."""
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    )
    actual = actual.detach().cpu()
    if expected.dtype.is_floating_point:
        actual = actual.to(expected.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def assert_outputs(
    case: Mapping, produced: Mapping[str, torch.Tensor], atol: float = ATOL, rtol: float = RTOL,
    tolerances: Mapping[str, tuple[float, float]] | None = None,
) -> int:
    """Compare every tensor output recorded in ``case`` against ``produced``.

    An expected output the handler did not produce is a failure, so a handler cannot pass
    by silently skipping part of a case. Returns the number of outputs compared.
    """
    expected = {k: v for k, v in case["outputs"].items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(produced))
    assert not missing, f"{case['case']}: handler produced no value for outputs {missing}"
    tolerances = tolerances or {}
    for key, value in expected.items():
        a, r = tolerances.get(key, (atol, rtol))
        assert_close(f"{case['case']}.{key}", produced[key], value, atol=a, rtol=r)
    return len(expected)


def manifest_shapes(module: torch.nn.Module) -> dict[str, tuple]:
    """``{key: (shape, dtype)}`` of a module's state dict (works on the meta device)."""
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in
            module.state_dict().items()}
