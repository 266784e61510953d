"""Linear operators K of diffusion blocks, with the operator-norm bounds the time step needs.

K is a stack of convolution parts K_1..K_m (the 2D gradient has two: the x and the y forward
difference); K u is the list (K_1 u, ..., K_m u) and K^T v = sum_l K_l^T v_l. Each part is a
cross-correlation with a kernel of shape (C_out, C_in / groups, *size), as torch's conv1d and
conv2d compute it, so that the block is exactly a residual block with W1 = K, W2 = -K^T
(P2 Theorem 1).

Boundaries:
- "reflect": the "valid" correlation (only where the kernel fits) and its transpose. For the
  forward difference this is the zero-flux (reflecting, homogeneous Neumann) boundary: D+ u
  has n - 1 entries, the fluxes between neighbours, and no flux leaves the ends.
- "periodic": the correlation of the periodic extension (n outputs) and its transpose.

Norm bounds (MATH.md 2): ||K||_2^2 <= sum_l ||K_l||_2^2, and for one part the Schur test on
the matrix of kernel 1-norms, ||K_l||_2 <= sqrt(max row sum * max column sum) of
(||k_ij||_1)_ij, which is Young's sum |k| for one channel. This gives the exact constants of
the known stencils: ||D+||^2 <= 4/h^2 (1D), 8/h^2 (2D gradient), 16/h^4 for the second
difference. For trainable kernels the bound is recomputed from the weights at every call.

Pixel-grid operators (``Operator.grid``, the coupled blocks of P3): the named stencils
(gradient, www, ...) applied to every image channel of u (B, M, H, W) on its own, each part's
valid correlation placed back on the pixel grid at the stencil's centre and padded with zeros
where the stencil does not fit (no flux across the image boundary), so that K u is one tensor
(B, M, c, H, W) with every operator channel at every pixel, as a coupled activation needs.
The correlation, its transpose and the norm bound are those of the parts above; an optional
Gaussian smoothing (P3 36-38) is applied first, and last in K^T (it is symmetric).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .runtime import StabilityError
from .timestep import positive

BOUNDARIES = ("reflect", "periodic")
#: the pixel-grid stencils of ``Operator.grid``
OPERATORS = ("gradient", "central_gradient", "laplacian", "hessian", "gaussian_gradient",
             "www")
#: the parameter of the nonstandard discretisation used in P3 section 6
WWW_ALPHA = 0.41


class Operator(torch.nn.Module):
    """K = (K_1, ..., K_m), each a convolution (see the module docstring).

    ``difference`` marks forward-difference operators (one part per axis, kernel [-1, 1]/h
    per channel): for these the update is a convex combination of neighbours when
    tau <= 2 / (g_max ||K||^2), which proves the L-inf (max-min) principle, and in 1D the
    sign condition tau <= 1 / (g_max ||K||^2) (MATH.md 2). Other operators only have the
    Euclidean guarantee.
    """

    def __init__(self, kernels: Sequence[torch.Tensor], *, dims: int = 1, groups: int = 1,
                 trainable: bool = False, boundary: str = "reflect", difference: bool = False,
                 name: str = "custom") -> None:
        super().__init__()
        if dims not in (1, 2):
            raise StabilityError(f"operators are 1D or 2D, got dims={dims}")
        if boundary not in BOUNDARIES:
            raise StabilityError(
                f"unknown boundary {boundary!r}; use one of {', '.join(BOUNDARIES)}")
        if not kernels:
            raise StabilityError("an operator needs at least one kernel")
        weights = []
        for k, w in enumerate(kernels):
            w = torch.as_tensor(w, dtype=torch.get_default_dtype()) if not isinstance(
                w, torch.Tensor) else w.detach().clone()
            if w.dim() == dims:  # a plain stencil: one channel
                w = w.reshape(1, 1, *w.shape)
            if w.dim() != dims + 2:
                raise StabilityError(
                    f"kernel {k} has shape {tuple(w.shape)}; a {dims}D operator needs "
                    f"(C_out, C_in/groups, {'size' if dims == 1 else 'kh, kw'})")
            if not torch.isfinite(w).all():
                raise StabilityError(f"kernel {k} has non-finite entries")
            weights.append(w)
        self.dims, self.groups, self.boundary = dims, groups, boundary
        if difference:  # the max-min proofs need exactly a [-1, 1]/h stencil per channel
            for w in weights:
                flat = w.reshape(w.shape[0], -1)
                nonzero = (flat != 0).sum(1)
                if (trainable or groups != w.shape[0] or not bool((nonzero == 2).all())
                        or not torch.equal(flat.sum(1), torch.zeros_like(flat.sum(1)))
                        or not bool((flat.reshape(-1)[flat.reshape(-1) != 0][1::2] > 0).all())):
                    raise StabilityError(
                        "difference=True needs a fixed forward difference [-a, a] per channel "
                        "(use Operator.forward_difference)")
        self.difference = difference and not trainable
        # the grid size of a stencil built by forward_difference or grid; None for custom and
        # learned kernels
        self.spacing: float | None = None
        # pixel-grid layout (``grid``): each part's centre, the www parameter, the smoothing
        self.centres: list[tuple[int, ...]] | None = None
        self.alpha: float | None = None
        self.sigma: float | None = None
        self.trainable = trainable
        self.name = name
        self.parts = len(weights)
        for k, w in enumerate(weights):  # learned kernels are parameters, fixed ones buffers
            if trainable:
                self.register_parameter(f"kernel{k}", torch.nn.Parameter(w))
            else:
                self.register_buffer(f"kernel{k}", w)
        channels = {w.shape[1] * groups for w in weights}
        if len(channels) != 1:
            raise StabilityError("all kernels of an operator must take the same input channels")
        self.in_channels = channels.pop()
        outs = {w.shape[0] for w in weights}
        if any(o % groups for o in outs):
            raise StabilityError(f"output channels must be divisible by groups={groups}")

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def forward_difference(cls, dims: int = 1, channels: int = 1, h: float = 1.0,
                           boundary: str = "reflect", dtype: torch.dtype | None = None
                           ) -> Operator:
        """D+ / h per channel; in 2D the gradient (x and y forward differences). ``dtype``
        of the stencil: torch's default unless given."""
        positive(h, "grid size h")
        _count(channels, "channels")
        dtype = dtype or torch.get_default_dtype()
        d = torch.tensor([-1.0, 1.0], dtype=torch.float64) / h
        if dims == 1:
            kernels = [d.reshape(1, 1, 2).repeat(channels, 1, 1)]
        else:
            kernels = [d.reshape(1, 1, 1, 2).repeat(channels, 1, 1, 1),
                       d.reshape(1, 1, 2, 1).repeat(channels, 1, 1, 1)]
        if not torch.isfinite(d.to(dtype)).all():
            raise StabilityError(f"grid size h = {h:g} gives 1/h beyond the range of {dtype}; "
                                 "use a larger h or a wider dtype")
        op = cls([k.to(dtype) for k in kernels], dims=dims,
                 groups=channels, boundary=boundary, difference=True,
                 name="forward difference" if dims == 1 else "forward-difference gradient")
        op.spacing = float(h)
        return op

    @classmethod
    def second_difference(cls, channels: int = 1, h: float = 1.0,
                          boundary: str = "reflect") -> Operator:
        """[1, -2, 1] / h^2 per channel (1D), the operator of the fourth-order You-Kaveh
        model: u <- u - tau L^T Phi(L u)."""
        positive(h, "grid size h")
        _count(channels, "channels")
        k = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64) / h**2
        return cls([k.reshape(1, 1, 3).repeat(channels, 1, 1).to(torch.get_default_dtype())],
                   dims=1, groups=channels, boundary=boundary, name="second difference")

    @classmethod
    def learned(cls, dims: int = 1, channels: int = 1, width: int = 3, *,
                init: str = "difference", boundary: str = "reflect",
                generator: torch.Generator | None = None, depthwise: bool = False
                ) -> Operator:
        """A trainable C x C kernel of the given width (width x width in 2D), or with
        ``depthwise=True`` one kernel per channel (C x 1, groups = C). ``init``: "difference"
        (a forward difference on the diagonal plus small noise) or "random"."""
        _count(channels, "channels")
        _count(width, "kernel width")
        if width < 2:
            raise StabilityError(f"kernel width must be at least 2, got {width}")
        inputs = 1 if depthwise else channels
        shape = (channels, inputs, *([width] * dims))
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        if init == "random":
            w = noise / math.sqrt(inputs * width**dims)
        elif init == "difference":
            w = 0.01 * noise
            centre = (width - 1) // 2
            for c in range(channels):
                d = 0 if depthwise else c
                if dims == 1:
                    w[c, d, centre] -= 1.0
                    w[c, d, centre + 1] += 1.0
                else:
                    w[c, d, centre, centre] -= 1.0
                    w[c, d, centre, centre + 1] += 1.0
        else:
            raise StabilityError(f"unknown init {init!r}; use 'difference' or 'random'")
        return cls([w.to(torch.get_default_dtype())], dims=dims, trainable=True,
                   groups=channels if depthwise else 1, boundary=boundary,
                   name=f"learned {width}-tap{' depthwise' if depthwise else ''}")

    @classmethod
    def grid(cls, operator: str = "gradient", h: float = 1.0, sigma: float | None = None,
             alpha: float = WWW_ALPHA) -> Operator:
        """A 2D pixel-grid operator (module docstring): u (B, M, H, W) -> (B, M, c, H, W).

        ``operator``: one of OPERATORS. Its ||K||^2 bound (``norm2_bound``): the sum of squared
        kernel 1-norms (Young), 8/h^2 for the gradient, 2/h^2 for the central and the
        Gaussian-smoothed gradient (smoothing has norm <= 1), 64/h^4 for the Laplacian, 34/h^4
        for the Hessian; the exact 8 (1 - alpha)/h^2 for ``www`` (Weickert, Welk and Wickert,
        ``alpha`` in [0, 1/2], default 0.41 as in P3 section 6). ``sigma``: smooth the image
        with a sampled Gaussian of that standard deviation first (the Gaussian-smoothed
        operators of P3 36-38); ``gaussian_gradient`` is the central gradient with sigma = 1
        unless given.
        """
        positive(h, "grid size h")
        if operator == "gaussian_gradient" and sigma is None:
            sigma = 1.0
        if sigma is not None:
            positive(sigma, "sigma")
        if isinstance(alpha, bool) or not (isinstance(alpha, int | float) and 0 <= alpha <= 0.5):
            raise StabilityError(f"alpha of the www operator must be in [0, 1/2], got "
                                 f"{alpha!r}")
        stencils = _stencils(operator, float(h), float(alpha))
        # float64 (cast to the input's dtype on use): a .double() block gets weights such as
        # sqrt((1 - alpha) / 4) exact, not rounded through float32
        op = cls([k for k, _ in stencils], dims=2, name=operator)
        op.spacing, op.alpha, op.centres = float(h), float(alpha), [c for _, c in stencils]
        if sigma is not None:
            # zero-padded 'same' correlation with the symmetric, normalised Gaussian: a
            # symmetric matrix of norm <= 1 (Young), its own transpose
            op.sigma = float(sigma)
            op.register_buffer("smooth", gaussian_kernel(sigma, h))
        return op

    @property
    def per_channel_1d(self) -> bool:
        """One 1D kernel per channel (what the fused learned-kernel step computes)."""
        w = self.weights[0]
        return (self.dims == 1 and self.parts == 1 and w.shape[1] == 1
                and self.groups == w.shape[0] == self.in_channels)

    @property
    def single_kernel(self) -> bool:
        """One part with as many output as input channels, full (C x C, groups = 1) or one
        kernel per channel (groups = C): what the fused channel-mixing step computes."""
        w = self.weights[0]
        return self.parts == 1 and w.shape[0] == self.in_channels and (
            self.groups == 1 or (self.groups == w.shape[0] and w.shape[1] == 1))

    def full_kernel(self) -> torch.Tensor:
        """The single kernel as a C x C kernel (C, C, *size): a per-channel kernel on the
        diagonal (differentiable in the weights)."""
        w = self.weights[0]
        if self.groups == 1:
            return w
        eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        return eye.reshape(*eye.shape, *([1] * self.dims)) * w

    @property
    def weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"kernel{k}") for k in range(self.parts)]

    # -- application ----------------------------------------------------------------------------

    def forward(self, u: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        """K u: one tensor per part, or for a pixel-grid operator the parts placed on the grid,
        (B, M, c, H, W)."""
        self.check(u)
        if self.centres is None:
            return self._parts(u)
        b, m, *size = u.shape
        flat = self._smooth(u.reshape(b * m, 1, *size))
        placed = [F.pad(part, self._placement(w, centre))
                  for part, w, centre in zip(self._parts(flat), self.weights, self.centres)]
        return torch.cat(placed, 1).reshape(b, m, self.parts, *size)

    def adjoint(self, v: Sequence[torch.Tensor] | torch.Tensor,
                like: torch.Tensor | None = None) -> torch.Tensor:
        """K^T v = sum_l K_l^T v_l, shaped like the input ``like`` (which a pixel-grid
        operator does not need: its v (B, M, c, H, W) has the image's size)."""
        if self.centres is None:
            if like is None:
                raise StabilityError("K^T v needs the input's shape: pass like=u")
            return self._transposed(v, like)
        b, m, c, *size = v.shape
        parts = []
        for j, (w, centre) in enumerate(zip(self.weights, self.centres)):
            part = v[:, :, j]
            for axis, (n, k, at) in enumerate(zip(size, w.shape[2:], centre)):
                part = part.narrow(2 + axis, at, n - k + 1)  # where the stencil fits
            parts.append(part.reshape(b * m, 1, *part.shape[2:]))
        flat = self._transposed(parts, v.new_empty((b * m, 1, *size)))
        return self._smooth(flat).reshape(b, m, *size)  # the smoothing is symmetric

    def _parts(self, u: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for w in self.weights:
            w = w.to(device=u.device, dtype=u.dtype)
            if self.boundary == "periodic":
                pads = []
                for size in reversed(w.shape[2:]):
                    pads += [0, size - 1]
                v = F.pad(u, pads, mode="circular")
            else:
                v = u
            conv = F.conv1d if self.dims == 1 else F.conv2d
            out.append(conv(v, w, groups=self.groups))
        return out

    def _transposed(self, v: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        total = None
        transpose = F.conv_transpose1d if self.dims == 1 else F.conv_transpose2d
        for w, part in zip(self.weights, v):
            y = transpose(part, w.to(device=part.device, dtype=part.dtype), groups=self.groups)
            if self.boundary == "periodic":  # fold the wrapped-around entries back
                for axis, size in enumerate(like.shape[2:]):
                    dim = 2 + axis
                    head = y.narrow(dim, 0, size)
                    tail = y.narrow(dim, size, y.shape[dim] - size)
                    if tail.shape[dim]:
                        head = head + F.pad(tail, _pad_to(tail, dim, size))
                    y = head
            total = y if total is None else total + y
        assert total is not None
        return total

    @staticmethod
    def _placement(w: torch.Tensor, centre: tuple[int, ...]) -> list[int]:
        """F.pad arguments that put a valid correlation with kernel w back on the grid, the
        kernel's ``centre`` over each pixel (F.pad order: last axis first, before, after)."""
        pads: list[int] = []
        for k, at in zip(reversed(w.shape[2:]), reversed(centre)):
            pads += [at, k - 1 - at]
        return pads

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The separable Gaussian of ``grid(sigma=...)``, zero-padded to the same size."""
        if self.sigma is None:
            return x
        k = self.smooth.to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        for axis in range(self.dims):
            shape = [1] * self.dims
            shape[axis] = -1
            padding = [0] * self.dims
            padding[axis] = r
            x = F.conv2d(x, k.reshape(1, 1, *shape), padding=tuple(padding))
        return x

    def norm2_bound(self) -> torch.Tensor:
        """An upper bound of ||K||_2^2 (float64 tensor; differentiable for learned kernels);
        for the www stencil the exact 8 (1 - alpha) / h^2, the symbol's maximum at the
        checkerboard, below Young's 8 / h^2. Smoothing has norm <= 1."""
        if self.centres is not None and self.name == "www":
            assert self.alpha is not None and self.spacing is not None
            return torch.tensor(8 * (1 - self.alpha) / self.spacing**2, dtype=torch.float64,
                                device=self.kernel0.device)
        total = torch.zeros((), dtype=torch.float64)
        for w in self.weights:
            w = w.to(torch.float64)
            m = w.abs().flatten(2).sum(-1)  # (C_out, C_in/groups): kernel 1-norms
            rows = m.sum(1).max()
            g = self.groups
            cols = m.reshape(g, m.shape[0] // g, m.shape[1]).sum(1).max()
            total = total.to(w.device) + rows * cols  # Schur: ||K_l||^2 <= rows * cols
        return total

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        """A pixel-grid operator's bounds (www's exact norm, the max-min step h^2 / ...) are
        computed from its h and alpha, not from the stencils: stencils of another h or alpha
        loaded from a state dict would give a time step that does not hold. Refused before
        this operator's entries are loaded (load_state_dict raises; entries of an enclosing
        module visited earlier may already be loaded, as with any error it raises)."""
        if self.centres is not None:
            self._check_stencils(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _check_stencils(self, state_dict: Any, prefix: str) -> None:
        assert self.spacing is not None and self.alpha is not None
        expected = {f"kernel{k}": w.reshape(1, 1, *w.shape)
                    for k, (w, _) in enumerate(_stencils(self.name, self.spacing, self.alpha))}
        if self.sigma is not None:  # its norm <= 1 enters the bound
            expected["smooth"] = gaussian_kernel(self.sigma, self.spacing)
        for key, want in expected.items():
            given = state_dict.get(prefix + key)
            if not isinstance(given, torch.Tensor):
                continue  # missing: load_state_dict says so
            have = given.detach().to("cpu", torch.float64)
            if have.shape != want.shape or not torch.allclose(
                    have, want, rtol=4 * torch.finfo(given.dtype).eps, atol=0):
                raise StabilityError(
                    f"the state dict holds {self.name} stencils of another grid size, alpha or "
                    f"sigma than this operator's (h = {self.spacing:g}, alpha = "
                    f"{self.alpha:g}, sigma = {self.sigma}); build the block with the values it "
                    "was saved with")

    def check(self, u: torch.Tensor) -> None:
        """Refuse what the operator cannot take: another shape or number of channels, or an
        input smaller than a kernel."""
        if not isinstance(u, torch.Tensor):
            raise StabilityError(f"expected a torch.Tensor, got {type(u).__name__}")
        want = "(batch, channels, length)" if self.dims == 1 else "(batch, channels, H, W)"
        if u.dim() != self.dims + 2:
            raise StabilityError(
                f"a {self.dims}D block takes input of shape {want}; got shape {tuple(u.shape)}")
        if self.centres is None and u.shape[1] != self.in_channels:
            raise StabilityError(
                f"the operator has {self.in_channels} input channel(s); the input has "
                f"{u.shape[1]} (shape {tuple(u.shape)})")
        for w in self.weights:
            if any(n < k for n, k in zip(u.shape[2:], w.shape[2:])):
                what = "the stencil" if self.centres is not None else "a kernel"
                raise StabilityError(
                    f"input of size {tuple(u.shape[2:])} is smaller than {what} of size "
                    f"{tuple(w.shape[2:])}")

    def extra_repr(self) -> str:
        if self.centres is not None:
            return (f"{self.name} on the pixel grid, h={self.spacing:g}"
                    + (f", alpha={self.alpha:g}" if self.name == "www" else "")
                    + (f", sigma={self.sigma:g}" if self.sigma is not None else ""))
        return (f"{self.name}, dims={self.dims}, channels={self.in_channels}, "
                f"boundary={self.boundary!r}, trainable={self.trainable}")


def _pad_to(t: torch.Tensor, dim: int, size: int) -> list[int]:
    """F.pad arguments that grow ``t`` along ``dim`` to ``size`` at the end."""
    pads = [0] * (2 * (t.dim() - 2))
    pads[2 * (t.dim() - 1 - dim) + 1] = size - t.shape[dim]
    return pads


def _count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StabilityError(f"{what} must be a positive integer, got {value!r}")


def stencil_range(u: torch.Tensor, dims: int, periodic: bool, box: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest and largest value of u over each sample's stencil neighbourhood: itself
    and its neighbours along each of the last ``dims`` axes (the 3 x 3 box with ``box``),
    wrapping round when ``periodic``. Under the max-min step bound an explicit step with
    g >= 0 makes each new value a convex combination of these (MATH.md 2), so clamping to
    them changes nothing in exact arithmetic and keeps the principle exact in floating
    point (a computed u - tau K^T Phi(K u) can round past them)."""
    if not box and not periodic:
        # in place on views, where torch.compile would copy for each: padded there
        return _cross_range_padded(u, dims) if torch.compiler.is_compiling() else \
            _cross_range(u, dims)
    lo = hi = u
    mode = "circular" if periodic else "replicate"  # zero flux: the missing neighbour is u
    for axis in range(dims):
        dim = u.dim() - dims + axis
        n = u.shape[dim]
        pads = [0, 0] * dims
        pads[2 * (dims - 1 - axis):2 * (dims - 1 - axis) + 2] = [1, 1]
        # the cross: neighbours of u along each axis; the box (separable): of the range so far
        low = F.pad(lo if box else u, pads, mode=mode)
        high = F.pad(hi if box else u, pads, mode=mode)
        lo = torch.minimum(lo, torch.minimum(low.narrow(dim, 0, n), low.narrow(dim, 2, n)))
        hi = torch.maximum(hi, torch.maximum(high.narrow(dim, 0, n), high.narrow(dim, 2, n)))
    return lo, hi


def _cross_range_padded(u: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """_cross_range without writes: each neighbour is u shifted along an axis, padded with
    +inf (for the minimum) or -inf (for the maximum) where there is none (torch.compile
    fuses constant pads into one loop; a replicating pad was twice as slow)."""
    v = u.detach()
    lo = hi = v
    for axis in range(dims):
        dim = u.dim() - dims + axis
        n = u.shape[dim]
        if n < 2:
            continue
        for before, part in ((0, v.narrow(dim, 1, n - 1)), (1, v.narrow(dim, 0, n - 1))):
            lo = torch.minimum(lo, padded(part, dim, before, 1 - before, math.inf))
            hi = torch.maximum(hi, padded(part, dim, before, 1 - before, -math.inf))
    return lo, hi


def padded(x: torch.Tensor, axis: int, before: int, after: int,
           value: float = 0.0) -> torch.Tensor:
    """x with ``before`` and ``after`` entries ``value`` along ``axis``."""
    pads = [0, 0] * (x.dim() - axis)
    pads[-2:] = [before, after]
    return F.pad(x, pads, value=value)


def _cross_range(u: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """stencil_range's cross with a reflecting boundary, in place on two copies of u (no
    padded copies; values only: the clamp takes no gradient through its bounds)."""
    with torch.no_grad():
        v = u.detach()
        lo, hi = v.clone(), v.clone()
        for axis in range(dims):
            dim = u.dim() - dims + axis
            n = u.shape[dim]
            if n < 2:
                continue
            before, after = v.narrow(dim, 0, n - 1), v.narrow(dim, 1, n - 1)
            lo.narrow(dim, 0, n - 1).clamp_max_(after)
            lo.narrow(dim, 1, n - 1).clamp_max_(before)
            hi.narrow(dim, 0, n - 1).clamp_min_(after)
            hi.narrow(dim, 1, n - 1).clamp_min_(before)
    return lo, hi


def clamp_finite(out: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """out clamped to [lo, hi] where it is finite, as a correction of rounding: the values are
    clamped, the gradient is that of out (as in the fused kernels, whose backward is the
    step's). A value that overflowed (inf) or is NaN stays so, for the caller's check to see:
    clamping it would pass off a wrong step as a right one. ``out`` is a fresh step: without
    gradients, on the CPU, it is clamped in place."""
    if (not out.requires_grad and out.device.type == "cpu"
            and not torch.compiler.is_compiling() and bool(torch.isfinite(out).all())):
        return out.clamp_(lo, hi)  # a fresh step without gradients: in place, two passes
    clamped = torch.minimum(torch.maximum(out, lo), hi).detach()
    # + (out - out.detach()): exactly 0 in value, the identity in the gradient
    return torch.where(torch.isfinite(out), clamped + (out - out.detach()), out)


def _stencils(operator: str, h: float, alpha: float = WWW_ALPHA
              ) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """(kernel (kh, kw), centre (ci, cj)) per operator channel, float64. Channels that form
    gradient vectors come in (x, y) pairs: rows are y, columns x."""
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    if operator == "gradient":  # forward differences D+x, D+y
        return [(t([[-1.0, 1.0]]) / h, (0, 0)), (t([[-1.0], [1.0]]) / h, (0, 0))]
    if operator in ("central_gradient", "gaussian_gradient"):  # (the latter smooths first)
        return [(t([[-0.5, 0.0, 0.5]]) / h, (0, 1)), (t([[-0.5], [0.0], [0.5]]) / h, (1, 0))]
    if operator == "laplacian":
        return [(t([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) / h**2, (1, 1))]
    if operator == "hessian":  # (xx, xy, yx, yy), the centred mixed difference
        mixed = t([[0.25, 0.0, -0.25], [0.0, 0.0, 0.0], [-0.25, 0.0, 0.25]]) / h**2
        return [(t([[1.0, -2.0, 1.0]]) / h**2, (0, 1)), (mixed, (1, 1)), (mixed, (1, 1)),
                (t([[1.0], [-2.0], [1.0]]) / h**2, (1, 0))]
    if operator == "www":
        return _www_stencils(h, alpha)
    raise StabilityError(f"unknown operator {operator!r}; use {', '.join(OPERATORS)}")


def _www_stencils(h: float, alpha: float) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """The 3 x 3 nonstandard discretisation of Weickert, Welk and Wickert (2013), used by P3
    section 6, as five gradient vectors on each 2 x 2 cell of pixels (a, b / c, d):

    - the four one-sided gradients at the cell's corners, (b - a, c - a), (b - a, d - b),
      (d - c, c - a), (d - c, d - b), each weighted sqrt((1 - alpha) / 4): the mean of their
      products is Mickens' nonstandard approximation of grad u grad u^T;
    - the averaged gradient ((b - a + d - c) / 2, (c - a + d - b) / 2), weighted sqrt(alpha):
      the standard one.

    sum_k s_k s_k^T is then (1 - alpha) x nonstandard + alpha x standard structure tensor, and
    K^T diag(g) K with one g per cell is, for constant g, g x the 9-point Laplacian
    (1 - alpha) x 5-point + alpha x diagonal 5-point / 2, whose h^2 error is rotation
    invariant near alpha = 1/3. ||K||^2 = 8 (1 - alpha) / h^2 exactly (the symbol's maximum,
    at the checkerboard) for alpha in [0, 1/2].
    """
    corner = math.sqrt((1 - alpha) / 4) / h
    dx_top, dx_bottom = [[-1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [-1.0, 1.0]]
    dy_left, dy_right = [[-1.0, 0.0], [1.0, 0.0]], [[0.0, -1.0], [0.0, 1.0]]
    pairs = [(dx_top, dy_left), (dx_top, dy_right), (dx_bottom, dy_left),
             (dx_bottom, dy_right)]
    out = []
    for kx, ky in pairs:
        out += [(torch.tensor(kx, dtype=torch.float64) * corner, (0, 0)),
                (torch.tensor(ky, dtype=torch.float64) * corner, (0, 0))]
    mean = math.sqrt(alpha) / h / 2
    out += [(torch.tensor([[-1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) * mean, (0, 0)),
            (torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) * mean, (0, 0))]
    return out


def gaussian_kernel(sigma: float, h: float) -> torch.Tensor:
    """The sampled 1D Gaussian of standard deviation sigma (in units of length), truncated at
    3 sigma and normalised to sum 1 (float64)."""
    radius = max(1, math.ceil(3 * sigma / h))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64) * h
    k = torch.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


def smooth(u: torch.Tensor, sigma: float, spacing: Sequence[float], *,
           periodic: bool = False) -> torch.Tensor:
    """u_sigma: u convolved with the sampled Gaussian of standard deviation ``sigma`` (in
    units of length, ``gaussian_kernel``) along each of its last len(spacing) axes, axis i of
    grid spacing spacing[i]; at the boundary the image is mirrored (u_{-1-k} = u_k, the
    reflecting boundary of the diffusion, so a constant stays constant), or wrapped round
    (``periodic``). Mirrored as often as the kernel needs on short axes."""
    dims = len(spacing)
    for axis, h in zip(range(u.dim() - dims, u.dim()), spacing):
        n = u.shape[axis]
        if not 3 * sigma / h <= 4 * n:  # the kernel's radius, also for sigma = inf or nan
            raise StabilityError(
                f"a Gaussian of sigma = {sigma:g} reaches {3 * sigma / h:.3g} samples, more than "
                f"4 times the {n} samples of axis {axis - u.dim() + dims}: it would smooth the "
                f"image to its mean; use sigma <= {4 * n * h / 3:.4g}")
        k = gaussian_kernel(sigma, h).to(device=u.device, dtype=u.dtype)
        r = (k.numel() - 1) // 2
        index = torch.arange(-r, n + r, device=u.device) % (n if periodic else 2 * n)
        if not periodic:
            index = torch.where(index >= n, 2 * n - 1 - index, index)
        x = u.index_select(axis, index).movedim(axis, -1)
        shape = x.shape
        x = F.conv1d(x.reshape(-1, 1, shape[-1]), k.reshape(1, 1, -1))
        u = x.reshape(*shape[:-1], n).movedim(-1, axis)
    return u
