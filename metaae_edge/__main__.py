"""``python -m metaae_edge ...`` is ``metaae-edge ...``."""

from .cli import main

if __name__ == "__main__":
    main()
