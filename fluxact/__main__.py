"""`python -m fluxact`: the same command line as the `fluxact` console script."""

from .cli import main

raise SystemExit(main())
