"""A Brownian path stored on a grid and refined inside each cell by counter-based draws.

`GridBrownianPath` is a drop-in for ``diffrax.VirtualBrownianTree`` with the same law (at the
same ``tol``, for a power-of-two number of cells) and an evaluation that costs
``refine_levels + 1`` Gaussian draws of the state's shape, all drawn at once, instead of a
sequential descent of ``log2(span / tol)`` levels.
"""

from __future__ import annotations

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Key
from .._validate import arg_error, static_real

#: Default bound on the memory of the stored grid (bytes).
DEFAULT_MAX_BYTES = 2**30
#: Default number of stored cells.
DEFAULT_GRID_CELLS = 64


def _any(v: float) -> bool:
    return True


def refine_levels_for(span: float, num_cells: int, tol: float | None) -> int:
    """The number of midpoint levels below a cell of width ``span / num_cells`` needed to reach a
    finest interval ``<= tol`` (0 when ``tol`` is None or the cells are already that fine)."""
    if tol is None:
        return 0
    width = span / num_cells
    levels = 0
    while width / 2**levels > tol * (1 + 1e-6):  # the slack absorbs span / (span / 4096) != 4096
        levels += 1
    return levels


def grid_bytes(num_cells: int, shape: jax.ShapeDtypeStruct, levy: bool = False) -> int:
    """Bytes of the stored grid: ``num_cells + 1`` states (twice that with Lévy area)."""
    return (2 if levy else 1) * (num_cells + 1) * math.prod(shape.shape) \
        * jnp.dtype(shape.dtype).itemsize


def default_num_cells(shape: jax.ShapeDtypeStruct, max_bytes: int = DEFAULT_MAX_BYTES,
                      levy: bool = False) -> int:
    """``DEFAULT_GRID_CELLS`` halved until the grid fits in ``max_bytes`` (at least 1 cell;
    halving keeps a power of two, so the path keeps the tree's law)."""
    cells = DEFAULT_GRID_CELLS
    while cells > 1 and grid_bytes(cells, shape, levy) > max_bytes:
        cells //= 2
    return cells


def _cumsum0(x, sequential: bool | None = None):
    """``cumsum`` along axis 0: a sequential scan on CPU (XLA:CPU lowers ``jnp.cumsum`` to a
    reduce-window that is several times slower), ``jnp.cumsum`` elsewhere (``sequential`` None:
    by the default backend)."""
    if sequential is None:
        sequential = jax.default_backend() == "cpu"
    if sequential:
        def step(c, v):
            c = c + v
            return c, c

        return jax.lax.scan(step, jnp.zeros_like(x[0]), x)[1]
    return jnp.cumsum(x, axis=0)


class GridBrownianPath(dfx.AbstractBrownianPath):
    r"""A Brownian motion on ``[t0, t1]`` sampled once on a uniform grid of ``num_cells`` cells
    and refined inside a cell, on demand, down to the resolution ``tol``: a faster replacement for
    ``diffrax.VirtualBrownianTree`` with adaptive step sizes.

    **Construction.** One key draws the ``num_cells`` increments ``N(0, h)``, ``h = (t1 - t0) /
    num_cells``; their cumulative sum (``num_cells + 1`` states) is stored. The memory is
    ``(num_cells + 1) x`` the state's bytes; a construction that would need more than
    ``max_bytes`` is refused with an error that says how many cells fit.

    **Evaluation.** ``W(t)`` in cell ``k`` is the linear interpolation of the stored ``W_k``,
    ``W_{k+1}`` plus a Brownian bridge written as a Lévy–Ciesielski (Schauder) series: level
    ``n = 0 .. L-1`` (``L = refine_levels``, the fewest levels that make ``h / 2^L <= tol``)
    contributes ``sqrt(h) 2^{-n/2} min(x, 1 - x) z_{n,j}`` with ``j`` the level-``n`` sub-cell
    that holds ``t``, ``x`` the position of ``t`` in it and ``z_{n,j} ~ N(0, 1)`` drawn from the
    key folded with ``(k, n, j)``. Below the finest width ``delta = h / 2^L``, ``t`` at ``s + r``
    in the finest interval ``[s, s + delta]`` gets ``sqrt(r (delta - r) / delta) z`` with one
    ``z`` per finest interval. One evaluation costs two gathers and ``L + 1`` state-shaped Gaussian
    draws made in one call; ``VirtualBrownianTree`` descends ``log2((t1 - t0) / tol)`` levels in
    a ``while_loop``, each with a key split and a state-shaped draw. ``W`` is a deterministic
    function of ``t`` (and the key), so an adaptive solver that rejects a step and retries it
    over a sub-interval sees the same path, and increments are additive:
    ``W(s, u) = W(s, m) + W(m, u)``.

    **Law, compared with** ``VirtualBrownianTree(t0, t1, tol)``. Both are exact Brownian motion
    at the points of a uniform grid of width ``delta`` (the tree's finest dyadic level, width
    ``(t1 - t0) 2^{-ceil(log2((t1 - t0) / tol))}``; here ``h / 2^L``, the same width when
    ``num_cells`` is a power of two), and both fill a finest interval with the same
    ``sqrt(r (delta - r) / delta) z`` term (diffrax's default ``"sqrt"`` spline), one ``z`` per
    interval. So every ``W(t)`` has the exact ``N(0, t - t0)`` law, the values at times that lie
    in distinct finest intervals have exactly Brownian motion's joint law, and only an increment
    with both ends inside one finest interval is approximate (its variance is not ``t - s``),
    exactly as for the tree; with a power-of-two ``num_cells`` the two paths are equal in law
    (not sample by sample: the draws differ). Plain linear interpolation inside a finest
    interval (no ``z``) would be exact only at its ends.

    **Cost.** Construction draws ``num_cells`` states; an evaluation draws
    ``refine_levels + 1``. With ``num_cells >= (t1 - t0) / tol`` (``L = 0``) an evaluation is
    O(1): two gathers and one draw, but the construction then draws ``(t1 - t0) / tol`` states
    (4096 at the tree's default resolution, the draws of some 300 tree evaluations); the default
    64 cells (with the tree's default resolution
    ``(t1 - t0) / 4096``: ``L = 6``) measured fastest end to end for an adaptive solve of about
    80 steps.

    **Space-time Lévy area** (``levy_area=diffrax.SpaceTimeLevyArea``, for the stochastic
    Runge–Kutta solvers ShARK, SRA1, SPaRK): each cell also draws ``bar-H = h H``,
    ``H ~ N(0, h / 12)`` independent of its increment, and the grid stores ``bar-H`` at the grid
    points by Chen's relation (twice the memory); inside a cell the path descends
    ``refine_levels`` midpoints by the tree's midpoint rule and interpolates in the finest
    interval by its interpolation rule (Foster 2020, Theorems 6.1.6 and 6.1.4), the descent
    written as coefficients on (cell increment, cell ``bar-H``, two draws per level, two in the
    finest interval) so that the ``2 refine_levels + 2`` draws are made in one call. The
    returned ``H`` of an increment follows from Chen's relation, as in the tree. With a
    power-of-two ``num_cells`` the pair ``(W, H)`` is again equal in law to the tree's (the
    midpoint rule samples the exact conditional law). Space-time-time Lévy area is not provided.

    One array state (not a PyTree of arrays); a float16 / bfloat16 state is drawn, summed and
    interpolated in float32 and stored and returned in its own dtype.

    **Arguments:**
    - `t0`, `t1`: the time interval, ``t0 < t1``, concrete numbers.
    - `shape`: a ``jax.ShapeDtypeStruct`` (floating dtype) or a tuple of ints (default float
      dtype), the state's shape.
    - `key`: a JAX random key.
    - `num_cells`: stored cells (default 64).
    - `tol`: the finest resolution (``None``: no refinement below a cell).
    - `max_bytes`: the bound on the stored grid's memory (default 1 GiB).
    - `levy_area`: ``diffrax.BrownianIncrement`` (default) or ``diffrax.SpaceTimeLevyArea``.
    """

    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    num_cells: int = eqx.field(static=True)
    refine_levels: int = eqx.field(static=True)
    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type[dfx.BrownianIncrement] | type[dfx.SpaceTimeLevyArea] = eqx.field(static=True)
    key: jax.Array
    w: jax.Array
    bhh: jax.Array | None

    def __init__(self, t0: float | np.floating | jax.Array, t1: float | np.floating | jax.Array,
                 shape: tuple[int, ...] | jax.ShapeDtypeStruct, key: Key, *,
                 num_cells: int = DEFAULT_GRID_CELLS,
                 tol: float | np.floating | jax.Array | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, levy_area: type = dfx.BrownianIncrement):
        t0 = static_real("t0", t0, "a finite number", _any)
        t1 = static_real("t1", t1, "a finite number > t0", _any)
        if not t0 < t1:
            raise ValueError(f"arguments `t0` and `t1`: got t0={t0!r} and t1={t1!r}, expected "
                             "t0 < t1.")
        if isinstance(num_cells, (bool, np.bool_)) or not isinstance(num_cells, (int, np.integer)) \
                or num_cells < 1:
            raise arg_error("num_cells", num_cells, "an integer >= 1")
        if tol is not None:
            tol = static_real("tol", tol, "None or a finite number > 0", _any)
            if not tol > 0:
                raise arg_error("tol", tol, "None or a finite number > 0")
        if isinstance(max_bytes, (bool, np.bool_)) or not isinstance(max_bytes, (int, np.integer)) \
                or max_bytes < 1:
            raise arg_error("max_bytes", max_bytes, "an integer >= 1 (bytes)")
        if levy_area not in (dfx.BrownianIncrement, dfx.SpaceTimeLevyArea):
            raise arg_error("levy_area", levy_area, "diffrax.BrownianIncrement or "
                            "diffrax.SpaceTimeLevyArea")
        levy = levy_area is dfx.SpaceTimeLevyArea
        if isinstance(shape, tuple) and all(isinstance(s, (int, np.integer)) for s in shape):
            shape = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        if not isinstance(shape, jax.ShapeDtypeStruct) \
                or not jnp.issubdtype(shape.dtype, jnp.floating):
            raise arg_error("shape", shape, "a tuple of ints or a jax.ShapeDtypeStruct with a "
                            "floating dtype (one array; PyTrees of arrays are not supported)")
        num_cells = int(num_cells)
        need = grid_bytes(num_cells, shape, levy)
        if need > max_bytes:
            fit = max(max_bytes // grid_bytes(0, shape, levy) - 1, 0)
            raise arg_error(
                "num_cells", num_cells,
                f"at most {fit} for a state of shape {shape.shape} {jnp.dtype(shape.dtype).name} "
                f"under max_bytes={max_bytes} (the grid stores num_cells + 1 states"
                f"{', twice with Lévy area' if levy else ''}: {need} bytes); use fewer cells "
                "(the path refines inside a cell down to `tol`, the same law) or raise max_bytes")
        self.t0, self.t1, self.num_cells, self.shape = t0, t1, num_cells, shape
        self.refine_levels = refine_levels_for(t1 - t0, num_cells, tol)
        self.levy_area = levy_area
        k_grid, k_area, self.key = jr.split(key, 3)
        h = (t1 - t0) / num_cells
        wide = self._time_dtype  # a float16 / bfloat16 state: draw and sum in float32
        dw = jr.normal(k_grid, (num_cells, *shape.shape), wide) * jnp.sqrt(jnp.asarray(h, wide))
        zero = jnp.zeros((1, *shape.shape), wide)
        if not levy:
            self.w = jnp.concatenate([zero, _cumsum0(dw)]).astype(shape.dtype)
            self.bhh = None
            return
        # space-time Lévy area: per cell bar-H = h H, H ~ N(0, h / 12) independent of the
        # increment; bar-H at the grid points by Chen's relation
        # bhh_u = bhh_s + bhh_su + (u W_s - s W_u) / 2 (times from t0)
        dbhh = jr.normal(k_area, (num_cells, *shape.shape), wide) * jnp.sqrt(
            jnp.asarray(h**3 / 12, wide))
        taus = jnp.arange(num_cells + 1, dtype=wide) * h

        def step(carry, inp):
            w, b = carry
            dwk, dbk, sa, sb = inp
            w1 = w + dwk
            b1 = b + dbk + 0.5 * (sb * w - sa * w1)
            return (w1, b1), (w1, b1)

        _, (w, b) = jax.lax.scan(step, (zero[0], zero[0]), (dw, dbhh, taus[:-1], taus[1:]))
        self.w = jnp.concatenate([zero, w]).astype(shape.dtype)
        self.bhh = jnp.concatenate([zero, b]).astype(shape.dtype)

    @property
    def _time_dtype(self):
        """Times, positions and coefficients: the state's dtype, at least float32."""
        return jnp.promote_types(self.shape.dtype, jnp.float32)

    def _point(self, t):
        dtype = self._time_dtype
        m, levels = self.num_cells, self.refine_levels
        t = jnp.asarray(jax.lax.stop_gradient(t), dtype)
        t = eqx.error_if(t, (t < self.t0) | (t > self.t1),
                         "GridBrownianPath evaluated outside its interval [t0, t1].")
        x = (t - self.t0) * (m / (self.t1 - self.t0))  # position in cells
        k = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, m - 1)
        u = jnp.clip(x - k, 0.0, 1.0)  # position inside cell k
        w_k = jax.lax.dynamic_index_in_dim(self.w, k, keepdims=False)
        w_k1 = jax.lax.dynamic_index_in_dim(self.w, k + 1, keepdims=False)
        # level n = 0 .. levels-1: Schauder tents; level `levels`: the finest-interval term
        n = np.arange(levels + 1)
        scale = jnp.asarray(2.0**n, dtype)
        j = jnp.minimum(jnp.floor(u * scale), scale - 1)  # sub-cell index at each level
        pos = u * scale - j  # position in the sub-cell, in [0, 1]
        tent = jnp.minimum(pos, 1 - pos) / jnp.sqrt(scale)  # 2^{-n/2} min(x, 1 - x)
        # finest interval of width delta = 2^-levels (cell units): sqrt(r (delta - r) / delta)
        delta = 2.0**-levels
        r = jnp.clip(pos[-1] * delta, 0.0, delta)
        coef = tent.at[-1].set(jnp.sqrt(r * jax.nn.relu(delta - r) / delta))
        ids = (scale + j).astype(jnp.int32)  # heap numbering: unique over (level, sub-cell)
        kcell = jr.fold_in(self.key, k)
        z = jax.vmap(lambda i: jr.normal(jr.fold_in(kcell, i), self.shape.shape, dtype))(ids)
        h = (self.t1 - self.t0) / m
        bridge = jnp.tensordot(coef * jnp.asarray(math.sqrt(h), dtype), z, axes=1)
        w_k, w_k1 = w_k.astype(dtype), w_k1.astype(dtype)
        return (w_k + u * (w_k1 - w_k) + bridge).astype(self.shape.dtype)

    def _point_levy(self, t):
        """``(W(t), bar-H(t), t - t0)``: a descent of ``refine_levels`` midpoints in cell ``k``
        by diffrax's space-time Lévy area midpoint rule, then its interpolation rule in the
        finest interval (Foster 2020, Theorems 6.1.6 and 6.1.4), written as coefficients on the
        basis (cell increment, cell bar-H, two draws per level, two in the finest interval) so
        that all draws are made in one call."""
        dtype = self._time_dtype
        m, levels = self.num_cells, self.refine_levels
        t = jnp.asarray(jax.lax.stop_gradient(t), dtype)
        t = eqx.error_if(t, (t < self.t0) | (t > self.t1),
                         "GridBrownianPath evaluated outside its interval [t0, t1].")
        h = (self.t1 - self.t0) / m
        x = (t - self.t0) * (m / (self.t1 - self.t0))
        k = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, m - 1)
        rho = jnp.clip(x - k, 0.0, 1.0) * h  # time inside cell k
        a = k.astype(dtype) * h  # the cell's start (from t0)
        tau = a + rho

        def at(arr, i):
            return jax.lax.dynamic_index_in_dim(arr, i, keepdims=False).astype(dtype)

        w_k, w_k1 = at(self.w, k), at(self.w, k + 1)
        b_k, b_k1 = at(self.bhh, k), at(self.bhh, k + 1)
        basis = np.eye(2 * levels + 4)
        w_s, w_su = jnp.zeros(basis.shape[0], dtype), jnp.asarray(basis[0], dtype)
        b_s, b_su = jnp.zeros(basis.shape[0], dtype), jnp.asarray(basis[1], dtype)
        s = jnp.zeros((), dtype)
        j = jnp.zeros((), jnp.int32)
        ids = []
        for n in range(levels):  # midpoint rule on [s, s + su]
            su = h / 2**n
            ids += [2 * (2**n + j), 2 * (2**n + j) + 1]
            z = jnp.asarray(basis[2 + 2 * n], dtype) * (math.sqrt(su) / 4)
            nn = jnp.asarray(basis[3 + 2 * n], dtype) * math.sqrt(su / 12)
            w_st = w_su / 2 + (3 / (2 * su)) * b_su + z
            w_tu = w_su / 2 - (3 / (2 * su)) * b_su - z
            b_st = b_su / 8 - (su / 4) * z + (su / 4) * nn
            b_tu = b_su / 8 - (su / 4) * z - (su / 4) * nn
            mid = s + su / 2
            w_t = w_s + w_st
            b_t = b_s + b_st + 0.5 * (mid * w_s - s * w_t)
            right = rho > mid
            s = jnp.where(right, mid, s)
            w_s, w_su = jnp.where(right, w_t, w_s), jnp.where(right, w_tu, w_st)
            b_s, b_su = jnp.where(right, b_t, b_s), jnp.where(right, b_tu, b_st)
            j = 2 * j + right.astype(jnp.int32)
        ids += [2 * (2**levels + j), 2 * (2**levels + j) + 1]
        # interpolation at rho in the finest interval [s, s + su]
        su = h / 2**levels
        sr = jax.nn.relu(rho - s)
        ru = jax.nn.relu(su - sr)
        x1 = jnp.asarray(basis[-2], dtype)
        x2 = jnp.asarray(basis[-1], dtype)
        d = jnp.sqrt(sr**3 + ru**3)
        d_prime = 1 / (2 * su * d)
        sq = jnp.sqrt(sr * ru)
        aa, bb = d_prime * sr**3 * sq, d_prime * ru**3 * sq
        w_r = w_s + (sr / su) * w_su + (6 * sr * ru / su**3) * b_su + (2 * (aa + bb) / su) * x1
        c = jnp.sqrt(3 * sr**3 * ru**3) / (6 * d)
        b_r = b_s + (sr**3 / su**3) * b_su - aa * x1 + c * x2 + 0.5 * (rho * w_s - s * w_r)
        kcell = jr.fold_in(self.key, k)
        draws = jax.vmap(lambda i: jr.normal(jr.fold_in(kcell, i), self.shape.shape, dtype))(
            jnp.stack(ids))
        dw_cell = w_k1 - w_k
        db_cell = b_k1 - b_k - 0.5 * ((a + h) * w_k - a * w_k1)
        values = jnp.concatenate([dw_cell[None], db_cell[None], draws])
        w_loc = jnp.tensordot(w_r, values, axes=1)
        b_loc = jnp.tensordot(b_r, values, axes=1)
        w = w_k + w_loc
        return w, b_k + b_loc + 0.5 * (tau * w_k - a * w), tau

    def _levy(self, t0, t1):
        dtype = self._time_dtype
        if t1 is None:
            w, b, tau = self._point_levy(t0)
            return tau, w, b / jnp.where(tau < jnp.finfo(dtype).eps, jnp.inf, tau)
        (w0, w1), (b0, b1), (s, u) = jax.vmap(self._point_levy)(
            jnp.stack([jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)]))
        su = u - s
        bhh = b1 - b0 - 0.5 * (u * w0 - s * w1)
        return su, w1 - w0, bhh / jnp.where(jnp.abs(su) < jnp.finfo(dtype).eps, jnp.inf, su)

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        """``W(t0)`` (``t1`` None) or the increment ``W(t1) - W(t0)``; with ``use_levy`` a
        ``diffrax.BrownianIncrement`` or ``diffrax.SpaceTimeLevyArea`` (``levy_area``). ``left``
        is ignored (Brownian motion has no jumps)."""
        del left
        if self.levy_area is dfx.SpaceTimeLevyArea:
            dt, w, hh = self._levy(t0, t1)
            out = self.shape.dtype
            if use_levy:
                return dfx.SpaceTimeLevyArea(dt=dt, W=w.astype(out), H=hh.astype(out))
            return w.astype(out)
        if t1 is None:
            w, dt = self._point(t0), jnp.asarray(t0, self._time_dtype) - self.t0
        else:
            w01 = jax.vmap(self._point)(jnp.stack([jnp.asarray(t0, self._time_dtype),
                                                    jnp.asarray(t1, self._time_dtype)]))
            w = w01[1] - w01[0]
            dt = jnp.asarray(t1, self._time_dtype) - jnp.asarray(t0, self._time_dtype)
        return dfx.BrownianIncrement(dt=dt, W=w) if use_levy else w


__all__ = ["GridBrownianPath"]
