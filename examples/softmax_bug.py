"""The elementwise-derivative softmax bug, caught and fixed (the README's example)."""
import numpy as np

import gradkit as gk

z = np.array([[0.3, -1.2, 2.0, 0.5]])          # logits
t = np.array([[0.0, 0.0, 1.0, 0.0]])           # one-hot target
act, mse = gk.Softmax(), gk.MSELoss()

# The bug: "delta = act.delta(z) * loss.delta(p)" with softmax's diagonal s(1-s)
wrong = lambda z, g: g * act(z) * (1 - act(z))
print(gk.gradcheck(act, z, vjp=wrong))         # WRONG, with the worst index

# The fix: the vector-Jacobian product, composed with any loss by the chain rule
head = gk.compose(act, mse)
print(gk.gradcheck(head, z, target=t))         # ok
L, dz = head.value_and_grad(z, t)
print("loss", float(L), "dL/dz", dz.round(6))
