"""check_module and check_device_parity on small modules: verdicts, attribution, kinks, state
preservation, errors. The ResNet18 checks are in test_model_resnet.py."""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import Snapshot

import gradcheck
from gradcheck import InvalidArgument, ModuleCheckResult, check_device_parity, check_module
from gradcheck.model import select_parameters
from gradcheck.model_results import DeviceParityResult


class _ScaledWeightGradLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        return grad @ weight, (grad.T @ x) * (1.0 + 1e-4), grad.sum(0)


class WrongLinear(torch.nn.Linear):
    def forward(self, x):  # type: ignore[override]
        return _ScaledWeightGradLinear.apply(x, self.weight, self.bias)


def mlp(hidden: torch.nn.Module | None = None, dropout: float = 0.0) -> torch.nn.Sequential:
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        hidden or torch.nn.Linear(8, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 3),
    )


def inputs() -> torch.Tensor:
    return torch.randn(5, 6, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_correct_module_passes_every_row_in_execution_order(mode):
    result = check_module(mlp(dropout=0.3), inputs(), mode=mode)
    assert result.passed, result.message
    assert [row.name for row in result.rows] == [
        "input",
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
        "6.weight",
        "6.bias",
    ]
    # 0.bias feeds a BatchNorm: its true gradient is 0 in train mode, so only |diff| is small.
    assert all(
        row.directions == 2 and abs(row.autograd - row.oracle) <= row.allowed for row in result.rows
    )
    assert result.likely_culprit is None
    assert "9 of 9 rows pass" in result.message


def test_a_wrong_weight_gradient_fails_exactly_its_row_and_is_named():
    model = mlp(hidden=WrongLinear(8, 8))
    result = check_module(model, inputs())
    assert not result.passed and result.status == "failed"
    assert [row.name for row in result.failed_rows] == ["4.weight"]
    assert result.likely_culprit == "4.weight"
    row = result.row("4.weight")
    assert row.relative_error == pytest.approx(1e-4, rel=0.05)
    assert "likely culprit: 4.weight" in result.message
    assert "reproduce: gradcheck.check_module(" in result.message
    with pytest.raises(gradcheck.GradientMismatch, match="1 of 9 rows fail"):
        result.raise_for_failure()


def test_a_wrong_input_gradient_fails_the_rows_upstream_and_names_the_closest_one():
    model = mlp()
    model[4].register_full_backward_hook(
        lambda _m, grad_in, _g: tuple(g * (1 + 1e-4) for g in grad_in)
    )
    result = check_module(model, inputs())
    assert [row.name for row in result.failed_rows] == [
        "input",
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]
    assert result.likely_culprit == "1.bias"
    assert "(4.weight)" in result.message


def test_a_switch_point_at_the_point_is_kink_affected_not_failed():
    class ReluOfBias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(4))  # relu exactly at its kink
            self.scale = torch.nn.Parameter(torch.ones(4))

        def forward(self, x):
            return torch.relu(self.bias) + self.scale * x

    result = check_module(ReluOfBias(), torch.randn(4, dtype=torch.float64))
    bias = result.row("bias")
    assert bias.status in ("kink-affected", "inconclusive"), bias
    assert bias.attempts == 6 and bias.directions == 0  # three fresh directions per direction
    assert "switch point" in bias.note
    assert result.row("scale").passed and result.row("input").passed
    assert result.status == "incomplete" and not result.passed and not result.failed_rows


def test_the_check_leaves_module_tensors_rng_grad_mode_and_tf32_as_they_were():
    model = mlp(dropout=0.5)
    model.train()
    model[1].eval()  # a mixed training flag must survive too
    model[0].weight.requires_grad_(False)
    model(inputs()).sum().backward()
    x = inputs().requires_grad_()
    x_before = x.detach().clone()
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        before = Snapshot.take(model)
        with torch.no_grad():
            result = check_module(model, x, mode="train", parameters=["0.weight", "4.*"])
        assert before.differences(model) == []
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    assert result.passed, result.message
    assert [row.name for row in result.rows] == ["input", "0.weight", "4.weight", "4.bias"]
    assert torch.equal(x.detach(), x_before) and x.requires_grad and x.grad is None


def test_float32_autograd_is_judged_against_the_float64_oracle():
    result = check_module(mlp(), inputs(), dtype=torch.float32)
    assert result.passed, result.message
    assert result.dtype == "float32" and result.tolerance.rtol == 1e-4


def test_a_custom_loss_and_tuple_or_dict_outputs_work():
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(6, 2)
            self.b = torch.nn.Linear(6, 3)

        def forward(self, x):
            return {"a": self.a(x), "b": (self.b(x).sin(), torch.ones(1, dtype=torch.long))}

    result = check_module(TwoHeads(), inputs())
    assert result.passed and len(result.rows) == 5

    def squared(output):
        return (output["a"] ** 2).mean()

    custom = check_module(TwoHeads(), inputs(), loss=squared, parameters="a.*")
    assert custom.passed and custom.loss == "squared"
    assert [row.name for row in custom.rows] == ["input", "a.weight", "a.bias"]


def test_result_round_trips_through_json():
    result = check_module(mlp(hidden=WrongLinear(8, 8)), inputs(), directions=1)
    data = json.loads(result.to_json())
    assert ModuleCheckResult.from_dict(data) == result
    assert data["rows"][0]["shape"] == [5, 6]
    assert "4.weight" in result.table()


def test_parity_against_float32_on_the_cpu_and_a_skipped_cuda():
    result = check_device_parity(mlp(), inputs(), devices=("cpu", "cuda"), dtype=torch.float32)
    assert {row.device for row in result.rows} == {"cpu"}
    assert all(row.relative_error < 1e-5 for row in result.rows), result.message
    assert result.passed == (result.status == "passed")
    if not torch.cuda.is_available():
        assert result.skipped and result.skipped[0][0] == "cuda"
        assert "CUDA is not available" in result.skipped[0][1]
        assert "skipped cuda" in result.message
    assert DeviceParityResult.from_dict(json.loads(result.to_json())) == result


def test_parity_catches_a_device_dependent_gradient():
    # A backward that is wrong only off the float64 reference (its dtype stands in for a device).
    class DtypeBug(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[override]
            return x * 2

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            return grad * (2.0 if grad.dtype == torch.float64 else 2.002)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4))

        def forward(self, x):
            return DtypeBug.apply(self.w * x)

    result = check_device_parity(Model(), torch.randn(4), devices=("cpu",), dtype=torch.float32)
    assert result.status == "failed"
    assert "w on cpu: relative error 1.0" in result.message


def test_parity_with_only_unavailable_devices_is_skipped_not_passed():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so cuda is not unavailable here")
    result = check_device_parity(mlp(), inputs(), devices=("cuda",))
    assert result.status == "skipped" and not result.passed and not result.rows


# -- errors ------------------------------------------------------------------------------------


def test_unknown_parameter_names_list_close_matches():
    with pytest.raises(InvalidArgument, match=r"'4.wieght'.*Close matches: 4.weight"):
        check_module(mlp(), inputs(), parameters=["4.wieght"])
    assert select_parameters(mlp(), "*.bias") == ["0.bias", "1.bias", "4.bias", "6.bias"]


def test_nothing_to_differentiate_is_an_error():
    with pytest.raises(InvalidArgument, match="no parameters to check"):
        check_module(torch.nn.ReLU(), torch.randn(3), include_inputs=False)
    with pytest.raises(InvalidArgument, match="no parameters to check"):
        check_module(torch.nn.ReLU(), torch.arange(3))


def test_outputs_that_are_not_tensors_are_an_error():
    class Words(torch.nn.Linear):
        def forward(self, x):  # type: ignore[override]
            return {"logits": super().forward(x), "label": "cat"}

    with pytest.raises(InvalidArgument, match=r"output\['label'\] of type str"):
        check_module(Words(6, 2), inputs())


def test_cuda_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidArgument, match=r"device='cuda'.*CUDA is not available"):
        check_module(mlp(), inputs(), device="cuda")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "training"}, "mode='training'"),
        ({"directions": 0}, "directions=0"),
        ({"seed": -1}, "seed=-1"),
        ({"dtype": torch.int64}, "dtype=torch.int64"),
        ({"loss": "mse"}, "loss='mse'"),
        ({"loss": lambda out: out.sum(0)}, "loss value of shape"),
        ({"device": "xla"}, "device type 'xla' is not supported"),
        ({"device": "tpu"}, "device='tpu', which torch does not understand"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, fragment):
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        check_module(mlp(), inputs(), **kwargs)


def test_a_non_module_and_bad_inputs_are_errors():
    with pytest.raises(InvalidArgument, match="check_function"):
        check_module(torch.sin, inputs())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="inputs\\[0\\] of type list"):
        check_module(mlp(), ([1.0] * 6,))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="NaN/Inf"):
        check_module(mlp(), torch.full((5, 6), float("nan")))


def test_rows_behind_a_zero_initialised_layer_are_flagged_as_proving_little():
    model = mlp()
    torch.nn.init.zeros_(model[6].weight)  # like torchvision's ViT head
    result = check_module(model, inputs())
    assert result.passed
    flagged = [row.name for row in result.rows if row.note]
    assert flagged == ["input", "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert "7 of 9 rows have an all-zero gradient" in result.message

    from gradcheck.zoo import redraw_zero_weights

    assert redraw_zero_weights(model) == ["6.weight"]
    assert not any(row.note for row in check_module(model, inputs()).rows)


def test_parity_allows_a_device_what_the_dtype_costs_on_the_cpu():
    # float32 ResNet18 in train mode at batch 2 is about 2.5e-2 from float64 on the CPU (the
    # dtype's rounding, amplified by batch statistics); a GPU must not be blamed for that.
    from gradcheck.model.parity import parity_rows
    from gradcheck.model.workspace import Gradients
    from gradcheck.tolerances import PARITY_BASELINE_FACTOR, parity_limit

    assert parity_limit(1e-4, None) == 1e-4
    assert parity_limit(1e-4, 1e-2) == pytest.approx(PARITY_BASELINE_FACTOR * 1e-2)
    truth = Gradients({"w": torch.ones(100, dtype=torch.float64)}, 1.0)
    on_cpu = Gradients({"w": torch.ones(100, dtype=torch.float64) * 1.01}, 1.0)

    def row(relative: float, baseline):
        measured = Gradients({"w": torch.ones(100, dtype=torch.float64) * (1 + relative)}, 1.0)
        return parity_rows(truth, measured, "cuda", 1e-4, baseline)[0]

    assert row(3e-2, on_cpu).passed and row(3e-2, on_cpu).allowed == pytest.approx(4e-2)
    assert not row(5e-2, on_cpu).passed
    assert not row(3e-2, None).passed and row(3e-5, None).passed
