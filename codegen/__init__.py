"""fluxact.codegen: SymPy -> Triton / torch code generation (issue 4; nothing here yet)."""
