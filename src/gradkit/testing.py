"""Assertions for tests of derivatives: :func:`assert_gradcheck`.

For users testing their own activations, losses, heads, layers or plain functions with
pytest (or ``unittest``): the assertion raises :class:`AssertionError` whose message is the
:func:`gradkit.gradcheck` table, so a failing test shows which check is wrong, where, and the
two values there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._array import ArrayLike
from ._rng import RNGLike
from .check import GradcheckReport, gradcheck

__all__ = ["assert_gradcheck"]


def assert_gradcheck(
    fn_or_obj: Any, x: ArrayLike, vjp: Callable[[Any, Any], Any] | None = None,
    jvp: Callable[[Any, Any], Any] | None = None, *, target: ArrayLike | None = None, rng: RNGLike = 0,
    eps: float | None = None, rtol: float | None = None, atol: float | None = None, max_points: int = 2000,
    fast: bool = False, allow_kinks: bool = True, msg: str = "",
) -> GradcheckReport:
    """Assert that the derivatives of ``fn_or_obj`` at ``x`` match central differences.

    A pytest-ready wrapper of :func:`gradkit.gradcheck`: same arguments, same checks.

    Parameters
    ----------
    fn_or_obj
        What to check, as :func:`gradkit.gradcheck` takes it:

        * an :class:`~gradkit.Activation` (its ``vjp``, ``jvp`` and batched ``jacobian``; a
          subclass with your own ``compute_*`` hooks is checked through them);
        * a :class:`~gradkit.Loss` or a :func:`~gradkit.compose` head, with ``target=``;
        * a :mod:`gradkit.nn` layer (a :class:`gradkit.nn.Layer` subclass of your own, ``Dense``,
          ...) or a ``Sequential``: ``backward``'s input gradient and each parameter's gradient
          (``grads[name]``), at evaluation mode (``forward(x)``);
        * a plain function ``f(x)`` with your derivative as ``vjp=(x, g) -> array`` and/or
          ``jvp=(x, v) -> array`` (``f(x, target)`` when ``target=`` is given).
    x
        The point (a real array; the check runs in its precision, see :func:`gradkit.gradcheck`).
    vjp, jvp, target, rng, eps, rtol, atol, max_points, fast
        As in :func:`gradkit.gradcheck` (``rng`` is SPEC 7's, default 0: the same check each run).
    allow_kinks : bool, default True
        Entries at a non-differentiable point (``relu`` at 0, sparsemax at a support change) pass,
        and the report counts them (``report.kinks``). ``False`` makes them fail the assertion.
    msg : str
        Put before the table in the assertion's message.

    Returns
    -------
    GradcheckReport
        The report, when every check passed (its ``kinks`` says how many entries were skipped
        as kinks).

    Raises
    ------
    AssertionError
        When a check fails; the message is ``msg`` and the report's table.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> from gradkit.testing import assert_gradcheck
    >>> x = np.array([[0.3, -1.2, 2.0, 0.5]])
    >>> report = assert_gradcheck(gk.Softmax(), x)
    >>> report.ok
    True
    >>> class DiagonalSoftmax(gk.Softmax):   # the bug: the Jacobian's diagonal only
    ...     def compute_vjp(self, xp, x, y, g, axis, mask):
    ...         return g * y * (1 - y)
    >>> assert_gradcheck(DiagonalSoftmax(), x)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: gradcheck DiagonalSoftmax(axis=-1, temperature=1.0) at shape (1, 4) ... FAILED
    ...
    vjp           7.016e-02    1.318e+00  (0, 3)            -0.056478     0.013685  WRONG
    ...
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    if not isinstance(msg, str):
        raise TypeError(f"msg must be a str; got {type(msg).__name__}")
    report = gradcheck(fn_or_obj, x, vjp, jvp, target=target, rng=rng, eps=eps, rtol=rtol, atol=atol,
                       max_points=max_points, fast=fast, allow_kinks=allow_kinks)
    if not report.ok:
        raise AssertionError((msg + "\n" if msg else "") + str(report))
    return report
