"""``ObjectSource``: the frames of objects read from foreign files, ready for ``to_zv``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OBJECT_GEOMETRIES = ("streamline", "polyline", "graph", "skeleton", "mesh")


@dataclass(frozen=True)
class ObjectSource:
    """What an object reader (``read_swc``, ``read_trk``, ``read_obj``, ...) returns.

    ``to_zv(source, path, ...)`` takes it in place of a DataFrame and writes its
    ``geometry`` with its ``edges``/``faces`` and ``object_attributes``; its ``source``
    dict (what the files' headers said) goes to the store's root attributes under
    ``zv_dask_source``.

    Attributes
    ----------
    geometry : str
        One of ``streamline``, ``polyline``, ``graph``, ``skeleton``, ``mesh``.
    vertices : dask.dataframe.DataFrame
        One row per vertex: axis columns, ``object_id`` and vertex attributes, rows
        of an object in its order.
    edges : dask.dataframe.DataFrame, optional
        ``source``, ``target`` global vertex row positions (skeletons child -> parent).
    faces : dask.dataframe.DataFrame, optional
        ``v0, v1, v2`` global vertex row positions, winding kept.
    object_attributes : pandas.DataFrame, optional
        One row per object, indexed by ``object_id``.
    source : dict
        JSON-able header facts (format, files, affine, ...).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> v = dd.from_pandas(pd.DataFrame({"x": [0., 1.], "y": [0., 1.],
    ...                                  "object_id": [0, 0]}), npartitions=1)
    >>> s = ObjectSource("streamline", v, source={"format": "example"})
    >>> sorted(s.to_zv_arguments())
    ['edges', 'faces', 'geometry', 'object_attributes']
    """

    geometry: str
    vertices: Any
    edges: Any = None
    faces: Any = None
    object_attributes: Any = None
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.geometry not in OBJECT_GEOMETRIES:
            raise ValueError(f"geometry must be one of {OBJECT_GEOMETRIES}, got "
                             f"{self.geometry!r}")

    def to_zv_arguments(self) -> dict:
        """The ``to_zv`` keywords this source fills (``source`` apart)."""
        return {"geometry": self.geometry, "edges": self.edges, "faces": self.faces,
                "object_attributes": self.object_attributes}
