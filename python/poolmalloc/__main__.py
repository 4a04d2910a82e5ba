"""``python -m poolmalloc``: see :mod:`poolmalloc._launcher`."""

from ._launcher import main

if __name__ == "__main__":
    main()
