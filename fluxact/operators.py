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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .runtime import StabilityError
from .timestep import positive

BOUNDARIES = ("reflect", "periodic")


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
        self.spacing: float | None = None  # h of a forward-difference operator
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

    def forward(self, u: torch.Tensor) -> list[torch.Tensor]:
        """K u, one tensor per part."""
        self._check(u)
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

    def adjoint(self, v: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """K^T v = sum_l K_l^T v_l, shaped like the input ``like``."""
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

    def norm2_bound(self) -> torch.Tensor:
        """An upper bound of ||K||_2^2 (float64 tensor; differentiable for learned kernels)."""
        total = torch.zeros((), dtype=torch.float64)
        for w in self.weights:
            w = w.to(torch.float64)
            m = w.abs().flatten(2).sum(-1)  # (C_out, C_in/groups): kernel 1-norms
            rows = m.sum(1).max()
            g = self.groups
            cols = m.reshape(g, m.shape[0] // g, m.shape[1]).sum(1).max()
            total = total.to(w.device) + rows * cols  # Schur: ||K_l||^2 <= rows * cols
        return total

    def _check(self, u: torch.Tensor) -> None:
        if not isinstance(u, torch.Tensor):
            raise StabilityError(f"expected a torch.Tensor, got {type(u).__name__}")
        want = "(batch, channels, length)" if self.dims == 1 else "(batch, channels, H, W)"
        if u.dim() != self.dims + 2:
            raise StabilityError(
                f"a {self.dims}D block takes input of shape {want}; got shape {tuple(u.shape)}")
        if u.shape[1] != self.in_channels:
            raise StabilityError(
                f"the operator has {self.in_channels} input channel(s); the input has "
                f"{u.shape[1]} (shape {tuple(u.shape)})")
        for w in self.weights:
            if any(n < k for n, k in zip(u.shape[2:], w.shape[2:])):
                raise StabilityError(
                    f"input of size {tuple(u.shape[2:])} is smaller than a kernel of size "
                    f"{tuple(w.shape[2:])}")

    def extra_repr(self) -> str:
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


def clamp_finite(out: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """out clamped to [lo, hi] where it is finite, as a correction of rounding: the values are
    clamped, the gradient is that of out (as in the fused kernels, whose backward is the
    step's). A value that overflowed (inf) or is NaN stays so, for the caller's check to see:
    clamping it would pass off a wrong step as a right one."""
    clamped = torch.minimum(torch.maximum(out, lo), hi).detach()
    # + (out - out.detach()): exactly 0 in value, the identity in the gradient
    return torch.where(torch.isfinite(out), clamped + (out - out.detach()), out)

