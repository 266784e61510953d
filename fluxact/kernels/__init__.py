"""fluxact.kernels: the formula-independent Triton code, one module per family.

Every kernel body here is a @triton.jit function that takes the formula as constexpr
arguments: PHI(x, p_ptr) -> Phi(x) and, for backward passes, DPHI(x, p_ptr) -> (Phi'(x),
(dPhi/dp_k, ...)) with NT the number of trainable parameters. A generated module defines PHI
and DPHI and one small kernel per family member that calls the body with them (Triton
specialises the body on the functions, inlining them); fluxact.runtime launches those kernels.
User names never reach this code: parameters are read by index from p_ptr inside PHI and DPHI.

- ``dtypes``: loads and stores in the compute dtype (bf16 by its bits);
- ``elementwise``: Phi and its backward;
- ``step1d``: explicit 1D steps, their backward, the temporally blocked run;
- ``step2d``: explicit 2D steps with the forward-difference gradient, their backward;
- ``convolution``: steps with learned kernels, per channel (1D) and channel-mixing (1D, 2D);
- ``coupled``: the coupled activations of paper 003 and the fused coupled 2D step.
"""
