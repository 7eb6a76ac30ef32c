"""The batched finite-difference engine (issue 18): one vmapped call per step where it is exact,
point by point where it is not, the same numbers either way, and the table read once per block
giving the same digits as level by level."""

from __future__ import annotations

import math
import random

import pytest
import torch

import gradcheck
import gradcheck.oracles.batch_eval as batch_eval
from gradcheck.oracles import FiniteDifference, Probes
from gradcheck.oracles.base import random_direction
from gradcheck.oracles.batch_eval import PointEvaluator, refusal
from gradcheck.oracles.probe_outcome import agree, agrees
from gradcheck.oracles.richardson import Entry, Table, best_of_table, best_of_tables
from gradcheck.oracles.steps import Quotients
from gradcheck.preparation import prepare

F64 = torch.float64


def _setup(fn, x, seed=0):  # type: ignore[no-untyped-def]
    return prepare(fn, x, "finite_difference", None, seed, None, None)


def _estimate(fn, x, *, batched: bool, seed: int = 0):  # type: ignore[no-untyped-def]
    """The oracle's estimate with vmap allowed or forced off (every point one call)."""
    setup = _setup(fn, x, seed)
    original = batch_eval.MIN_VMAP_ROWS
    try:
        if not batched:
            batch_eval.MIN_VMAP_ROWS = 10**9
        with torch.no_grad():
            return setup.oracle.estimate(setup.problem, setup.probes)
    finally:
        batch_eval.MIN_VMAP_ROWS = original


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[PointEvaluator]:
    made: list[PointEvaluator] = []
    original = PointEvaluator.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(PointEvaluator, "__init__", init)
    return made


ELEMENTWISE = [
    (torch.sin, torch.linspace(-2, 2, 12, dtype=F64)),
    (lambda x: torch.relu(x) * x.exp(), torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0], dtype=F64)),
    (lambda x: torch.round(x, decimals=3), torch.linspace(-1, 1, 9, dtype=F64)),
    (torch.log, torch.tensor([1e-3, 2.0, 30.0, 1e-9], dtype=F64)),
    (lambda x: torch.sqrt(x), torch.tensor([1e4, 3e4, 7.0], dtype=F64)),
    (lambda x: torch.tanh(10 * x.float()).double(), torch.linspace(-1, 1, 10, dtype=F64)),
]


@pytest.mark.parametrize(("fn", "x"), ELEMENTWISE)
def test_vmapped_steps_give_the_point_by_point_numbers_digit_for_digit(fn, x) -> None:  # type: ignore[no-untyped-def]
    batched = _estimate(fn, x, batched=True)
    looped = _estimate(fn, x, batched=False)
    for name in ("values", "errors", "lower", "upper", "reasons"):
        assert [repr(v) for v in getattr(batched, name)] == [
            repr(v) for v in getattr(looped, name)
        ], name


def test_a_plain_function_is_evaluated_in_a_few_vmapped_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _recording(monkeypatch)
    x = torch.randn(20, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert gradcheck.check_function(lambda a: a.sin() * a, x).passed
    (evaluator,) = made
    assert evaluator.batched and evaluator.vmapped > 200 and evaluator.looped == 0


class _NoVmapRule(torch.autograd.Function):
    """A custom Function without setup_context: vmap refuses it."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return g * x.cos()


def test_a_function_vmap_refuses_goes_point_by_point_and_the_refusal_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _recording(monkeypatch)

    def no_vmap_rule(x: torch.Tensor) -> torch.Tensor:
        return _NoVmapRule.apply(x)

    x = torch.linspace(-1, 1, 6, dtype=F64)
    assert gradcheck.check_function(no_vmap_rule, x).passed
    assert "under vmap" in str(refusal(no_vmap_rule))
    assert made[0].looped > 0 and made[0].vmapped == 0
    gradcheck.check_function(no_vmap_rule, x)
    assert not made[1].batched  # remembered: not tried again


def test_a_raise_at_one_perturbed_point_is_not_remembered_as_a_refusal() -> None:
    def singular_near_edge(x: torch.Tensor) -> torch.Tensor:
        if bool((x > 1.0).any()):
            raise ValueError("outside the domain")
        return x**2

    setup = _setup(singular_near_edge, torch.tensor([1.0, 0.2], dtype=F64))
    center = setup.problem.floating_outputs_at(setup.problem.point)
    evaluator = PointEvaluator(setup.problem, center)
    points = setup.problem.point + torch.tensor([[1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3]])
    rows = evaluator.at(points.to(F64))
    assert [e is None for e in rows.errors] == [False, True, True, True]
    assert refusal(singular_near_edge) is None


class _ScaledMatmul(torch.autograd.Function):
    """``x @ w`` whose weight gradient is off by ``rel``; vmappable (generate_vmap_rule)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, rel):  # type: ignore[no-untyped-def]
        return x @ w

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        x, _, rel = inputs
        ctx.save_for_backward(x)
        ctx.rel = rel

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return None, x.T @ g * (1.0 + ctx.rel), None


@pytest.mark.parametrize("seed", [0, 1])
def test_a_1e_6_error_in_a_batched_matmul_is_caught_and_the_correct_one_passes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _recording(monkeypatch)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 5, generator=generator, dtype=F64)
    w = torch.randn(5, 4, generator=generator, dtype=F64)
    correct = gradcheck.check_function(lambda w: _ScaledMatmul.apply(x, w, 0.0), w, seed=seed)
    wrong = gradcheck.check_function(lambda w: _ScaledMatmul.apply(x, w, 1e-6), w, seed=seed)
    assert correct.passed, correct.message
    assert wrong.status == "failed", wrong.message
    assert all(evaluator.vmapped > 0 for evaluator in made)


def test_the_incremental_table_equals_the_whole_table_digit_for_digit() -> None:
    rng = random.Random(0)
    for _ in range(200):
        table, levels = Table(), []
        h = rng.uniform(1e-4, 1e-2)
        for j in range(rng.randint(1, 12)):
            step = h / 2**j
            central = 1.0 + rng.uniform(-1, 1) * step**2 + rng.gauss(0, 1e-13)
            level = Quotients(step, central, central, central, rng.uniform(0, 1e-12))
            levels.append(level)
            table.add(level)
            assert repr(table.best()) == repr(best_of_table(levels))


@pytest.mark.parametrize("depth", [2, 3, 6, 12])
def test_the_tables_of_many_sequences_at_once_equal_each_table_and_stopping_rule(
    depth: int,
) -> None:
    rng = random.Random(depth)
    count = 50
    central = torch.empty(depth, count, dtype=F64)
    rounding = torch.empty(depth, count, dtype=F64)
    for k in range(count):
        h, slope = rng.uniform(1e-4, 1e-2), rng.uniform(-3, 3)
        for j in range(depth):
            noise = rng.choice([0.0, 1e-14, 1e-9, math.nan, math.inf])
            central[j, k] = slope + rng.uniform(-1, 1) * (h / 2**j) ** 2 + noise
            rounding[j, k] = rng.uniform(0, 1e-11)
    value, error = best_of_tables(central, rounding)
    agreed = agree(central, rounding[-1], value, error)
    for k in range(count):
        levels = [
            Quotients(1.0 / 2**j, float(central[j, k]), 0.0, 0.0, float(rounding[j, k]))
            for j in range(depth)
        ]
        best = best_of_table(levels)
        assert repr((float(value[k]), float(error[k]))) == repr(tuple(best))
        assert bool(agreed[k]) == agrees(levels, Entry(*best))


def test_random_directions_are_reproducible_and_leave_excluded_elements_still() -> None:
    first = random_direction(3, 2, 1000, (5, 7))
    assert torch.equal(first, random_direction(3, 2, 1000, (5, 7)))
    assert float(first.abs().max()) == 1.0 and first[5] == 0 and first[7] == 0
    assert not torch.equal(first, random_direction(3, 1, 1000))
    probes = Probes(count=8, seed=3, excluded=(5, 7))
    assert not probes.is_basis
    assert torch.equal(probes.direction(2, 1000, torch.device("cpu")), first)


def test_progress_reports_every_group_of_probes() -> None:
    calls: list[tuple[int, int]] = []
    setup = _setup(lambda a: a.sin(), torch.linspace(0, 1, 30, dtype=F64))
    with torch.no_grad():
        FiniteDifference().estimate(setup.problem, setup.probes, lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (30, 30)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_check_function_passes_progress_to_the_oracle_and_refuses_a_bad_value() -> None:
    calls: list[tuple[int, int]] = []
    x = torch.linspace(0, 1, 12, dtype=F64)
    result = gradcheck.check_function(torch.sin, x, progress=lambda d, t: calls.append((d, t)))
    assert result.passed and calls[-1] == (12, 12)
    with pytest.raises(gradcheck.InvalidArgument, match="progress"):
        gradcheck.check_function(torch.sin, x, progress="yes")


def test_a_forced_bar_is_drawn_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    gradcheck.check_function(torch.sin, torch.linspace(0, 1, 5, dtype=F64), progress=True)
    assert "5/5 probes" in capsys.readouterr().err


def test_a_function_that_reads_its_inputs_storage_sees_a_tensor_of_its_own() -> None:
    """as_strided reads the storage: a point by point evaluation must hand fn a fresh tensor,
    not a row of the batch (a view at an offset into it)."""

    def strided(x: torch.Tensor) -> torch.Tensor:
        if not bool(x.abs().sum() >= 0):  # data-dependent: vmap refuses, point by point it is
            raise AssertionError
        return torch.as_strided(x, (3,), (2,), 0).exp()

    result = gradcheck.check_function(strided, torch.linspace(-1, 1, 6, dtype=F64))
    assert result.passed and not result.inconclusive, result.message


def _digits(estimate):  # type: ignore[no-untyped-def]
    return [
        [repr(v) for v in getattr(estimate, name)]
        for name in ("values", "errors", "lower", "upper", "reasons")
    ]


@pytest.mark.parametrize(("fn", "x"), ELEMENTWISE)
def test_small_groups_read_their_tables_in_floats_with_the_batched_tables_digits(
    fn,  # type: ignore[no-untyped-def]
    x,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradcheck.oracles.finite_diff as finite_diff

    monkeypatch.setattr(finite_diff, "SCALAR_TABLES_MAX", 0)
    batched = _estimate(fn, x, batched=True)
    monkeypatch.setattr(finite_diff, "SCALAR_TABLES_MAX", 10**9)
    in_floats = _estimate(fn, x, batched=True)
    assert _digits(in_floats) == _digits(batched)


def test_both_sides_noise_at_once_equals_each_side_one_value_at_a_time() -> None:
    from gradcheck.oracles.noise import NOISE_MULTIPLES, NoiseSide, noise_of_both_sides

    generator = torch.Generator().manual_seed(0)
    center = torch.randn(3, 4, dtype=F64, generator=generator)
    values = center + 1e-12 * torch.randn(2 * len(NOISE_MULTIPLES), 3, 4, generator=generator)
    values[1, 0, 0], values[7, 2, 3], values[0, 1, 1] = math.nan, math.inf, -0.0
    at_once = noise_of_both_sides(center, values)
    for side in range(2):
        one_by_one = NoiseSide(center)
        for k in range(len(NOISE_MULTIPLES)):
            one_by_one.add(values[side * len(NOISE_MULTIPLES) + k])
        expected = one_by_one.noise()
        assert [repr(v) for v in at_once[side].flatten().tolist()] == [
            repr(v) for v in expected.flatten().tolist()
        ]
    assert at_once[0, 0, 0] == 0.0 and at_once[1, 2, 3] == 0.0  # nothing measured past NaN/Inf


def test_the_noise_measured_from_one_batch_equals_the_one_measured_point_by_point() -> None:
    from gradcheck.oracles.fd_center import NoisePoints, center_of, measure

    x = torch.linspace(-1, 1, 7, dtype=F64)
    setup = _setup(lambda a: (a.float().tanh().double(), a.exp()), x)
    problem = setup.problem
    evaluator = PointEvaluator(problem, center_of(problem).outputs)  # type: ignore[union-attr]
    points = NoisePoints.of(problem, 1e-3 * problem.point.abs().clamp(0.01, 1.0))
    stacked = points.stacked()
    for i in range(len(points.multiples)):
        assert torch.equal(stacked[i], points.row(i))  # the same points, row by row
    centers = [center_of(problem), center_of(problem)]
    measure(problem, centers[0], [evaluator.at(stacked)])
    measure(problem, centers[1], (evaluator.at(points.row(i)[None]) for i in range(10)))
    together, apart = centers  # type: ignore[misc]
    for name in ("noisy", "narrow", "varied"):
        pairs = list(zip(getattr(together, name), getattr(apart, name)))
        assert len(pairs) == 2, name
        for a, b in pairs:
            assert (a is None and b is None) or torch.equal(a, b), name
    assert together.noisy[0] is not None  # float32 tanh is noisy


def test_close_rows_are_judged_the_same_with_or_without_non_finite_values() -> None:
    close = batch_eval._close
    b = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    assert close(b + 1e-12, b) and not close(b + 1e-6, b)
    with_nan = torch.tensor([1.0, math.nan, math.inf], dtype=F64)
    assert close(with_nan.clone(), with_nan)
    assert not close(torch.tensor([1.0, math.nan, 3.0], dtype=F64), with_nan)
    assert not close(torch.tensor([1.0, 2.0, math.inf], dtype=F64), b)
    assert close(torch.empty(0, dtype=F64), torch.empty(0, dtype=F64))


RANDOM = [
    lambda x: torch.nn.functional.dropout(x, 0.5),
    lambda x: torch.nn.functional.alpha_dropout(x, 0.5, training=True),
    lambda x: (x + torch.randn_like(x)).sin(),
    lambda x: x * torch.rand_like(x) + torch.randn(7, dtype=F64) * x**2,
]


@pytest.mark.parametrize("fn", RANDOM)
def test_random_draws_are_batched_with_the_point_by_point_numbers(
    fn,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _recording(monkeypatch)
    x = torch.randn(7, dtype=F64, generator=torch.Generator().manual_seed(2))
    batched = _estimate(fn, x, batched=True)
    assert made[-1].vmapped > 0 and made[-1].looped == 0  # one draw served the whole batch
    assert _digits(batched) == _digits(_estimate(fn, x, batched=False))
