"""What a backward owes its caller besides the right numbers, checked as torch.autograd.gradcheck
checks it (``check_grad_dtypes``, ``check_undefined_grad``, ``check_batched_grad``):

- every gradient has its input's dtype, shape and device;
- an output whose gradient is undefined (``None``: the output was not used, or a Function with
  ``ctx.set_materialize_grads(False)`` sees ``None``) counts as a zero gradient: leaving output
  ``j`` out of the backward gives what a zero cotangent for it gives;
- with ``batched=True``, backward under ``torch.func.vmap`` over several cotangents
  (``torch.autograd.grad(..., is_grads_batched=True)``) gives what one backward per cotangent
  gives, so ``torch.func.jacrev``, ``vmap`` and batched Hessians of the function are right.

Each problem is a sentence naming the input or output and what differed; an empty tuple means
the contract holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BATCH = 3
"""Cotangents in one batched backward."""


def _agree(first: torch.Tensor, second: torch.Tensor) -> float:
    """The largest difference between two gradients beyond rounding, relative to the larger's
    magnitude (0 when they agree; non-finite elements of either side are not compared)."""
    a, b = first.detach().to(torch.float64), second.detach().to(torch.float64)
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not bool(finite.any()):
        return 0.0
    difference = float((a - b).abs()[finite].max())
    scale = max(float(a.abs()[finite].max()), float(b.abs()[finite].max()), 1.0)
    eps = torch.finfo(first.dtype).eps if first.is_floating_point() else 0.0
    allowed = 64 * eps * scale * max(1.0, float(finite.sum()) ** 0.5)
    return 0.0 if difference <= allowed else difference


def contract_problems(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    input_names: Sequence[str],
    output_names: Sequence[str],
    seed: int,
    batched: bool,
) -> tuple[str, ...]:
    """Every problem of backward's contract at this point: gradient metadata, undefined output
    gradients, and (``batched``) backward under vmap."""
    problems = metadata_problems(inputs, grads, input_names)
    problems += undefined_problems(outputs, inputs, cotangents, output_names, input_names)
    if batched:
        problems += batched_problems(outputs, inputs, cotangents, input_names, seed)
    return problems


def _difference(first: torch.Tensor | None, second: torch.Tensor | None) -> float:
    """:func:`_agree` of two gradients, an absent one (None: no gradient flowed) counting as
    zeros."""
    if first is None and second is None:
        return 0.0
    if first is None:
        assert second is not None
        first = torch.zeros_like(second)
    if second is None:
        second = torch.zeros_like(first)
    return _agree(first, second)


def metadata_problems(
    inputs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], names: Sequence[str]
) -> tuple[str, ...]:
    """Gradients whose dtype, shape or device differ from their input's."""
    problems = []
    for x, g, name in zip(inputs, grads, names):
        if g is None:
            continue
        for what, want, got in (
            ("dtype", x.dtype, g.dtype),
            ("shape", tuple(x.shape), tuple(g.shape)),
            ("device", x.device, g.device),
        ):
            if want != got:
                problems.append(f"the gradient of {name} has {what} {got}, but {name} has {want}")
    return tuple(problems)


def undefined_problems(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
    output_names: Sequence[str],
    input_names: Sequence[str],
) -> tuple[str, ...]:
    """For each output of several, backward without it (its gradient undefined) against
    backward with a zero cotangent for it."""
    if len(outputs) < 2:
        return ()
    problems: list[str] = []
    for j in range(len(outputs)):
        kept = [k for k in range(len(outputs)) if k != j]
        zeros = [torch.zeros_like(v) if k == j else v for k, v in enumerate(cotangents)]
        with_zero = _grads(outputs, inputs, zeros)
        try:
            without = _grads([outputs[k] for k in kept], inputs, [cotangents[k] for k in kept])
        except Exception as error:  # the user's backward, handed None
            problems.append(
                f"backward raised {type(error).__name__} ({_first_line(error)}) when the "
                f"gradient of {output_names[j]} was undefined (None); an undefined output "
                "gradient must count as zeros"
            )
            continue
        for name, a, b in zip(input_names, without, with_zero):
            difference = _difference(a, b)
            if difference:
                problems.append(
                    _undefined_text(name, output_names[j], f"differs by {difference:.3g}")
                )
    return tuple(problems)


def _undefined_text(name: str, output: str, how: str) -> str:
    return (
        f"the gradient of {name} with {output}'s gradient undefined (None) {how} from the one "
        f"with a zero cotangent for {output}; an undefined output gradient must count as zeros"
    )


def batched_problems(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
    input_names: Sequence[str],
    seed: int,
) -> tuple[str, ...]:
    """Backward under vmap over :data:`BATCH` seeded cotangents against one backward each."""
    generator = torch.Generator().manual_seed(seed + 7)
    batches = [
        torch.randn((BATCH, *v.shape), generator=generator, dtype=torch.float64).to(
            device=v.device, dtype=v.dtype
        )
        for v in cotangents
    ]
    try:
        batched = torch.autograd.grad(
            outputs, inputs, batches, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
    except Exception as error:
        return (
            f"backward fails under vmap (torch.autograd.grad(..., is_grads_batched=True), "
            f"{BATCH} cotangents): {type(error).__name__}: {_first_line(error)}",
        )
    problems = []
    for k in range(BATCH):
        one = _grads(outputs, inputs, [b[k] for b in batches])
        for name, many, single in zip(input_names, batched, one):
            difference = _difference(None if many is None else many[k], single)
            if difference:
                problems.append(
                    f"the gradient of {name} for cotangent {k} of {BATCH} differs under vmap "
                    f"from one backward with that cotangent by {difference:.3g}"
                )
    return tuple(dict.fromkeys(problems))


def _grads(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
) -> tuple[torch.Tensor | None, ...]:
    return torch.autograd.grad(outputs, inputs, cotangents, retain_graph=True, allow_unused=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
