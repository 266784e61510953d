"""fluxact.kernels: the formula-independent Triton code, one module per family, each with its
kernels and their launchers.

Every kernel computes with the formula through three globals, _phi, _dphi and N_TRAIN
(``formula``): a generated module defines _phi and _dphi, and ``formula.bind`` makes a copy of
a kernel that holds them (Triton specialises the copy and inlines them). User names never
reach this code: parameters are read by index from p_ptr inside _phi and _dphi.

- ``library``: every kernel by name, bound to a formula (``Bound``), and the custom ops of
  all families (``custom_ops``);
- ``formula``: the placeholders and ``bind``;
- ``launch``: block sizes, the launch helper, and ``register``, which makes a family's
  launchers one torch custom op with autograd;
- ``dtypes``: loads and stores in the compute dtype (bf16 by its bits); ``stencil``: what the
  stencil kernels share;
- ``elementwise``: Phi and its backward;
- ``step1d``: explicit 1D steps, their backward, the temporally blocked run;
- ``step2d``: explicit 2D steps with the forward-difference gradient, their backward;
- ``convolution``: steps with learned kernels, per channel (1D) and channel-mixing (1D, 2D);
- ``coupled``: the coupled activations of paper 003 and the fused coupled 2D step.
"""

