"""Write the example store shipped in ``zv_dask/data`` with the reference writer.

    python scripts/make_example_store.py [OUT]

Run once by the maintainers (needs ``zarr-vectors``); the result is committed so the
package works without the reference package installed.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from zarr_vectors import building as B
from zarr_vectors.multiresolution.coarsen import build_pyramid


def main(out: str) -> None:
    path = Path(out)
    if path.exists():
        shutil.rmtree(path)
    rng = np.random.default_rng(2026)
    pos = rng.uniform(0.0, 2000.0, (5_500, 3)).astype(np.float32)
    pos = pos[~np.all(pos >= 1500.0, axis=1)][:5_000]   # one empty octant
    attrs = {
        "intensity": (pos[:, 0] / 2000.0 + rng.normal(0, 0.05, len(pos))).astype(np.float32),
        "label": rng.integers(0, 10, len(pos)).astype(np.int32),
        "region": rng.choice(np.array(["cortex", "white_matter", "ventricle"]), len(pos)),
    }
    B.write_points(str(path), pos, chunk_shape=(500.0,) * 3, bin_shape=(125.0,) * 3,
                   bounds=([0.0] * 3, [2000.0] * 3), vertex_attributes=attrs)
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         str(Path(__file__).resolve().parents[1] / "zv_dask" / "data" / "example.zarrvectors"))
