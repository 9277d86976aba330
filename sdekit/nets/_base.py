"""What every sdekit network declares."""

import equinox as eqx


class AbstractNet(eqx.Module):
    """A network called as ``net(x, t, cond=None, *, key=None)`` on a batch ``x`` (NHWC images
    or ``(N, d)`` vectors) at times ``t`` (a scalar, per example, or aligned with ``x``), with
    dropout only when ``key`` is given. Networks know nothing about SDEs.

    ``num_classes``: the number of class labels ``cond`` may take (``None``: unconditional); the
    index ``num_classes`` itself is the *null* class that classifier-free guidance uses for its
    unconditional branch.
    """

    num_classes: eqx.AbstractVar[int | None]
