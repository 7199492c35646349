"""An activation written as a subclass: the public compute_* hooks, with where= masks."""

import numpy as np
from array_api_compat import device

import gradkit as gk


@gk.activations.register  # under its `name`: checkpoints, the CLI and the estimators find it
class SoftplusNorm(gk.AxisActivation):
    """y_i = softplus(x_i) / sum_j softplus(x_j) along `axis`; masked entries give 0."""

    name = "softplus_norm_axis"
    output_range = (0.0, 1.0)  # lets compose() feed it to probability losses

    # Each hook gets the namespace xp (use only its functions: then NumPy, PyTorch, JAX and
    # CuPy all work), validated arrays of one float dtype, axis >= 0 and mask (bool) or None.
    def _parts(self, xp, x, axis, mask):
        s = xp.logaddexp(xp.zeros_like(x), x)  # softplus
        sigmoid = xp.exp(x - s)  # its derivative
        if mask is not None:  # masked entries take no part
            s, sigmoid = xp.where(mask, s, 0.0), xp.where(mask, sigmoid, 0.0)
        total = xp.sum(s, axis=axis, keepdims=True)
        return s, sigmoid, xp.where(total > 0, total, 1.0)

    def compute_forward(self, xp, x, axis, mask):
        s, _, total = self._parts(xp, x, axis, mask)
        return s / total

    def compute_vjp(self, xp, x, y, g, axis, mask):  # (g^T J)_j = sigmoid_j / S * (g_j - <g, y>)
        _, sigmoid, total = self._parts(xp, x, axis, mask)
        return sigmoid / total * (g - xp.sum(g * y, axis=axis, keepdims=True))

    def compute_jvp(self, xp, x, y, v, axis, mask):  # (J v)_i = (sigmoid_i v_i - y_i <sigmoid, v>) / S
        _, sigmoid, total = self._parts(xp, x, axis, mask)
        return (sigmoid * v - y * xp.sum(sigmoid * v, axis=axis, keepdims=True)) / total

    def compute_jacobian(self, xp, x, y, mask):  # the axis is last here; J[..., i, j] = dy_i/dx_j
        _, sigmoid, total = self._parts(xp, x, -1, mask)
        eye = xp.eye(x.shape[-1], dtype=x.dtype, device=device(x))
        return (eye - y[..., :, None]) * (sigmoid / total)[..., None, :]


rng = np.random.default_rng(0)
z = rng.standard_normal((4, 6))
where = rng.random((4, 6)) < 0.8
act = SoftplusNorm()
assert gk.gradcheck(act, z, rng=0).ok
assert gk.gradcheck(gk.activations.get("softplus_norm_axis", axis=0), z, rng=0).ok
# with a mask, a row is the activation of its live entries alone
row = where[0]
assert np.allclose(act(z, where=where)[0, row], act(z[0, row])) and np.all(act(z, where=where)[0, ~row] == 0)
head = gk.compose(act, "cross_entropy")
report = gk.gradcheck(head, z, target=np.array([0, 1, 2, 3]), rng=0)
print(report)
assert report.ok
print(act(z, where=where).round(3))
