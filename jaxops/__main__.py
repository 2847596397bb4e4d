"""``python -m jaxops``: the live parity report against PyTorch."""

from jaxops.report import main

if __name__ == "__main__":
    raise SystemExit(main())
