import sys

from zv_dask.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module too
    sys.exit(main())
