"""The common ``backward()`` errors, explained in plain words with the fix.

:func:`explain_backward_failure` says why ``loss.backward()`` fails (a method instead of a
tensor, no ``requires_grad``, a non-scalar without ``gradient``, a freed graph);
:func:`backward` calls ``loss.backward()`` and raises :class:`~gradcheck.BackwardError` with
that explanation, the original error chained.
"""

from __future__ import annotations

import torch

from gradcheck.errors import BackwardError, InvalidArgument

NO_GRAD_FRAGMENT = "does not require grad"
NON_SCALAR_FRAGMENT = "grad can be implicitly created only for scalar outputs"
FREED_GRAPH_FRAGMENT = "backward through the graph a second time"
INFERENCE_SAVE_FRAGMENT = "Inference tensors cannot be saved for backward"
# These fragments of torch's messages have been stable from torch 1.x to 2.14; checks that
# match them say so in their claim text.


def explain_backward_failure(loss: object, error: BaseException | None = None) -> str | None:
    """Why ``loss.backward()`` fails (or failed with ``error``), in plain words with the fix;
    None when nothing is wrong that this function knows about.

    Knows: a tensor *method* passed as the loss (``(pred - labels).sum`` without ``()``), a
    non-tensor loss (``.item()``, NumPy), a loss that does not require grad, a non-scalar loss
    without ``gradient``, and a second backward through a freed graph.
    """
    owner = getattr(loss, "__self__", None)
    if callable(loss) and isinstance(owner, torch.Tensor):
        method = getattr(loss, "__name__", "method")
        return (
            f"loss is the method Tensor.{method} of a tensor of shape {tuple(owner.shape)}, not "
            f"a tensor: the call parentheses are missing, so loss.backward() raises "
            f"AttributeError. Call it: loss = (...).{method}()."
        )
    if not isinstance(loss, torch.Tensor):
        return (
            f"loss is a {type(loss).__name__}, not a tensor: it left the graph (through .item(), "
            "float(), .tolist() or NumPy), so there is nothing to differentiate. Keep the loss a "
            "torch.Tensor until after backward()."
        )
    text = "" if error is None else str(error)
    if FREED_GRAPH_FRAGMENT in text:
        return (
            "the graph was already freed by an earlier backward(): its saved tensors are gone. "
            "Recompute the forward pass for each backward, or pass retain_graph=True to the "
            "earlier backward() call if you really need two."
        )
    if not loss.requires_grad:
        return (
            "loss does not require grad, so it has no grad_fn: no input it was computed from had "
            "requires_grad=True, or it was computed under torch.no_grad()/torch.inference_mode() "
            "or from .detach()ed tensors. Create the parameters with requires_grad=True and "
            "compute the loss with grad mode on."
        )
    if loss.numel() != 1 and (error is None or NON_SCALAR_FRAGMENT in text):
        return (
            f"loss has shape {tuple(loss.shape)} ({loss.numel()} values), but backward() without "
            "gradient= needs a scalar. Reduce it (loss.sum() or loss.mean()), or pass "
            "gradient=v with v of the same shape to get v^T J."
        )
    return None


def backward(
    loss: object,
    gradient: torch.Tensor | None = None,
    *,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> None:
    """``loss.backward(...)`` whose failures explain themselves.

    Raises :class:`gradcheck.InvalidArgument` (a TypeError) when ``loss`` is not a tensor (for
    example ``(pred - labels).sum`` without ``()``) and :class:`gradcheck.BackwardError` (a
    RuntimeError, with torch's error as its cause) when torch refuses the backward pass.
    """
    if not isinstance(loss, torch.Tensor):
        raise InvalidArgument(explain_backward_failure(loss))
    try:
        loss.backward(gradient, retain_graph=retain_graph, create_graph=create_graph)
    except RuntimeError as error:
        explanation = explain_backward_failure(loss, error)
        if explanation is None:
            raise
        raise BackwardError(f"{explanation} (torch said: {error})") from error
