"""check_module's batched evaluations give what one-by-one evaluations give: the stacked probe
points are bit for bit ``base + t * u``, a tensor below an in-place residual add is batched by
lifting its block's inputs (same values as the loop, same verdicts), and a planted gradient bug
on that path still fails its row."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradcheck.model.workspace as workspace_module
from gradcheck import check_module
from gradcheck.model.batched import (
    enclosing_modules,
    lift_candidates,
    per_lane_buffers,
    probe_points,
)
from gradcheck.model.settings import Settings
from gradcheck.model.workspace import Workspace
from gradcheck.status import FAILED, PASSED


class _WrongScaleGrad(torch.autograd.Function):
    """``x * w`` per channel whose weight gradient is ``1 + 1e-4`` times too large; vmap runs
    its forward (``generate_vmap_rule``), so the bug sits on the batched path."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x * w.view(1, -1, 1, 1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        return grad * w.view(1, -1, 1, 1), (grad * x).sum((0, 2, 3)) * (1.0 + 1e-4)


class Scale(nn.Module):
    """A per-channel scale, right or with the planted weight-gradient bug."""

    def __init__(self, channels: int, wrong: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels))
        self.wrong = wrong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wrong:
            return _WrongScaleGrad.apply(x, self.weight)
        return x * self.weight.view(1, -1, 1, 1)


class Block(nn.Module):
    """ResNet's pattern: ``out += shortcut(x)`` in place, the shortcut a conv and a scale."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.shortcut = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), Scale(4, wrong))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        out += self.shortcut(x)
        return torch.tanh(out)


def residual_net(wrong: bool = False) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 3, 1), Block(wrong), nn.Flatten(), nn.Linear(64, 5))


def images() -> torch.Tensor:
    return torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))


def test_probe_points_are_bit_for_bit_base_plus_t_u():
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(5, 7, generator=generator, dtype=torch.float64) * 1e3
    directions = [torch.randn(5, 7, generator=generator, dtype=torch.float64) for _ in range(2)]
    steps = [1e-6, -1e-6, 1e-7, -1e-7]
    expected = [base] + [base + t * u for u in directions for t in steps]
    assert torch.equal(probe_points(base, directions, steps), torch.stack(expected))
    uncentered = probe_points(base, directions[:1], steps, center=False)
    assert torch.equal(uncentered, torch.stack([base + t * directions[0] for t in steps]))


def test_the_modules_to_lift_go_outwards_from_the_parameters_module():
    assert enclosing_modules("layer2.0.downsample.0.weight") == [
        "layer2.0.downsample",
        "layer2.0",
        "layer2",
        "",
    ]
    assert enclosing_modules("fc.bias") == [""] and enclosing_modules("scale") == []
    assert enclosing_modules(0) == []
    assert lift_candidates("a.b.c.weight", set()) == [None, "a.b", "a", ""]
    assert lift_candidates("a.b.c.weight", {"a.b"}) == ["a.b", "a", ""]
    assert lift_candidates("a.d.weight", {"a.b"}) == [None, "a", ""]


def test_a_shortcut_parameter_is_batched_by_lifting_its_block_with_the_loops_values():
    settings = Settings.validated(
        residual_net(), dtype=torch.float64, device=None, mode="eval", directions=2, seed=0
    )
    workspace = Workspace(residual_net(), (images(),), settings, None)
    workspace.center_loss("test", observe=True)
    name = "1.shortcut.1.weight"
    base = workspace.params64[name]
    u = torch.randn(base.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    points = probe_points(base, [u], [1e-3, -1e-3, 1e-6, -1e-6])
    with pytest.raises(RuntimeError):
        # out += shortcut(x) with the main branch unbatched (eval mode: read-only statistics)
        workspace._batched_losses(name, points)
    batched = workspace.oracle_losses(name, points)
    assert workspace.lifted == {"1"} and name not in workspace.unbatchable
    looped = [workspace.oracle_loss(name, point) for point in points]
    assert batched == pytest.approx(looped, rel=1e-14, abs=1e-14)


def _loop_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Workspace, "_lifted_batch", lambda self, replace, points: None)


def test_lifted_batches_give_the_loops_verdicts(monkeypatch):
    batched = check_module(residual_net(), images())
    _loop_only(monkeypatch)
    looped = check_module(residual_net(), images())
    assert [row.name for row in batched.rows] == [row.name for row in looped.rows]
    assert [row.status for row in batched.rows] == [row.status for row in looped.rows]
    assert all(row.status == PASSED for row in batched.rows), batched.message
    for ours, loop in zip(batched.rows, looped.rows):
        if ours.autograd == loop.autograd:  # the same direction is shown
            assert abs(ours.oracle - loop.oracle) <= ours.error_estimate + loop.error_estimate


def test_a_planted_gradient_bug_on_the_lifted_path_still_fails_its_row(monkeypatch):
    lifted: list[str | None] = []
    original = workspace_module.lifted_inputs

    def spy(module: nn.Module, path: str | None, lane_zero: torch.Tensor) -> Any:
        lifted.append(path)
        return original(module, path, lane_zero)

    monkeypatch.setattr(workspace_module, "lifted_inputs", spy)
    result = check_module(residual_net(wrong=True), images())
    statuses = {row.name: row.status for row in result.rows}
    assert statuses.pop("1.shortcut.1.weight") == FAILED, result.message
    assert set(statuses.values()) == {PASSED}, result.message
    assert "1" in lifted


class Viewing(nn.Module):
    """A conv whose output is flattened with ``.view``, which a channels-last tensor refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return self.head(out.view(out.shape[0], -1))


def _workspace(module: nn.Module) -> Workspace:
    settings = Settings.validated(
        module, dtype=torch.float64, device=None, mode="eval", directions=2, seed=0
    )
    return Workspace(module, (images(),), settings, None)


def test_the_oracle_runs_channels_last_on_the_cpu_with_the_callers_values():
    workspace = _workspace(residual_net())
    plain = workspace.center_loss("test", observe=True)
    fast = workspace.adopt_oracle_layout(plain, "test")
    weight = workspace.oracle_tensor("1.conv.weight")
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert workspace.params64["1.conv.weight"].is_contiguous()  # autograd's side as given
    assert fast == pytest.approx(plain, rel=1e-13)


def test_a_module_that_refuses_channels_last_keeps_the_callers_layout():
    workspace = _workspace(Viewing())
    plain = workspace.center_loss("test", observe=True)
    assert workspace.adopt_oracle_layout(plain, "test") == plain
    assert workspace.oracle_params is workspace.params64
    result = check_module(Viewing(), images())
    assert result.passed, result.message


def test_channels_last_gives_the_callers_layouts_verdicts(monkeypatch):
    ours = check_module(residual_net(), images())
    monkeypatch.setattr(Workspace, "adopt_oracle_layout", lambda self, plain, stage: plain)
    plain = check_module(residual_net(), images())
    assert [row.status for row in ours.rows] == [row.status for row in plain.rows]
    for fast, slow in zip(ours.rows, plain.rows):
        if fast.autograd == slow.autograd:  # the same direction is shown
            assert abs(fast.oracle - slow.oracle) <= fast.error_estimate + slow.error_estimate


def test_train_mode_batches_only_the_buffers_of_modules_from_the_first_batched_one_on():
    order = {"": 0, "0": 1, "1": 2, "1.conv": 3, "1.norm": 4, "1.shortcut": 5, "3": 6}
    buffers = ["1.norm.running_mean", "3.running_var", "9.unseen"]
    assert per_lane_buffers(buffers, order, "1.shortcut") == {"3.running_var", "9.unseen"}
    assert per_lane_buffers(buffers, order, "1") == set(buffers)
    assert per_lane_buffers(buffers, order, None) is None  # an input: every buffer per lane
    assert per_lane_buffers(buffers, order, "not.called") is None


def test_train_mode_verdicts_match_every_buffer_per_lane(monkeypatch):
    ours = check_module(residual_net(), images(), mode="train")
    monkeypatch.setattr(Workspace, "_lane_buffers", lambda self, replace, lift: None)
    every = check_module(residual_net(), images(), mode="train")
    assert ours.passed, ours.message
    assert [row.status for row in ours.rows] == [row.status for row in every.rows]
    for fast, slow in zip(ours.rows, every.rows):
        if fast.autograd == slow.autograd:  # the same direction is shown
            assert abs(fast.oracle - slow.oracle) <= fast.error_estimate + slow.error_estimate


def test_a_planted_bug_below_an_unbatched_batch_norm_still_fails_in_train_mode():
    result = check_module(residual_net(wrong=True), images(), mode="train")
    statuses = {row.name: row.status for row in result.rows}
    assert statuses.pop("1.shortcut.1.weight") == FAILED, result.message
    assert set(statuses.values()) == {PASSED}, result.message


def test_autograd_along_a_direction_is_the_plain_product_sums() -> None:
    from gradcheck.model.rows import autograd_along
    from gradcheck.tolerances import AUTOGRAD_ROUNDING_FACTOR

    generator = torch.Generator().manual_seed(0)
    gradient = torch.randn(64, 3, 7, 7, generator=generator, dtype=torch.float64)
    u = torch.randn(64, 3, 7, 7, generator=generator, dtype=torch.float64)
    kept = (gradient.clone(), u.clone())
    eps = float(torch.finfo(torch.float64).eps)
    slope, rounding = autograd_along(gradient, u, eps)
    assert slope == float((gradient * u).sum())
    assert rounding == AUTOGRAD_ROUNDING_FACTOR * eps * float((gradient * u).abs().sum())
    assert torch.equal(gradient, kept[0]) and torch.equal(u, kept[1])  # the caller's, untouched
