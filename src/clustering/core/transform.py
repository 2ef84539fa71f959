"""The fitted feature transformation as data, so new stores can be put into a clustering space.

:func:`clustering.core.features.engineer_features` learns, from the stores it sees, which
features to keep and how to impute, transform, centre, scale, clip and (optionally) rotate them
with PCA. :class:`FittedTransform` records exactly those numbers as plain lists (JSON-safe, no
pickles), and :func:`apply_transform` replays them on any store × feature table: applied to the
training table it gives back the training matrix, applied to new stores it places them in the
same space as the cluster centres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Version tag of the stored form; bumped when the fields change meaning.
TRANSFORM_FORMAT = "clustering.transform/1"


@dataclass(frozen=True)
class FittedTransform:
    """What feature engineering learnt from the training stores.

    ``input_features`` are the columns of the training table, with the value a missing cell
    gets (``fill_values``, the training median). After the optional ``transform`` (``sqrt``),
    ``kept_features`` (in matrix order) are centred by ``centre``, divided by ``scale`` and,
    when ``clip`` is given, clipped to ± ``clip``. With PCA, ``pca_components`` (components ×
    kept features) rotate the values around ``pca_mean``. ``columns`` names the result's columns.
    """

    input_features: list[str]
    fill_values: list[float | None]
    transform: str
    kept_features: list[str]
    centre: list[float]
    scale: list[float]
    clip: list[float] | None
    pca_mean: list[float] | None
    pca_components: list[list[float]] | None
    columns: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (missing fill values as None)."""
        return {"format": TRANSFORM_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedTransform:
        """The transform stored by :meth:`as_dict`."""
        fields = {k: v for k, v in data.items() if k != "format"}
        return cls(**fields)


def _floats(values: np.ndarray | pd.Series) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float)]


def fitted_transform(
    *,
    input_features: list[str],
    fill_values: pd.Series,
    transform: str,
    kept_features: list[str],
    centre: np.ndarray,
    scale: np.ndarray,
    clip: np.ndarray | None,
    pca_mean: np.ndarray | None = None,
    pca_components: np.ndarray | None = None,
    columns: list[str],
) -> FittedTransform:
    """Build a :class:`FittedTransform` from the arrays feature engineering used."""
    fills = fill_values.reindex(input_features)
    return FittedTransform(
        input_features=list(input_features),
        fill_values=[None if pd.isna(v) else float(v) for v in fills],
        transform=transform,
        kept_features=list(kept_features),
        centre=_floats(centre),
        scale=_floats(scale),
        clip=None if clip is None else _floats(clip),
        pca_mean=None if pca_mean is None else _floats(pca_mean),
        pca_components=None
        if pca_components is None
        else [_floats(row) for row in np.asarray(pca_components, dtype=float)],
        columns=list(columns),
    )


def apply_transform(table: pd.DataFrame, fitted: FittedTransform) -> pd.DataFrame:
    """``table`` (stores × features, any index) in the fitted clustering space.

    Features the training stores had but ``table`` lacks count as missing and get the training
    fill value; features ``table`` has beyond those are ignored. Rows keep their index and order.
    """
    frame = table.reindex(columns=fitted.input_features).astype(float)
    fills = pd.Series(
        [np.nan if v is None else v for v in fitted.fill_values], index=fitted.input_features
    )
    frame = frame.fillna(fills)
    if fitted.transform == "sqrt":
        frame = frame.clip(lower=0.0).pow(0.5)
    # A kept feature outside the inputs is the CONSTANT stand-in used when nothing varied.
    raw = frame.reindex(columns=fitted.kept_features).fillna(0.0).to_numpy(dtype=float)
    values = np.nan_to_num((raw - np.asarray(fitted.centre)) / np.asarray(fitted.scale))
    if fitted.clip is not None:
        limit = np.asarray(fitted.clip)
        values = np.clip(values, -limit, limit)
    if fitted.pca_components is not None and fitted.pca_mean is not None:
        components = np.asarray(fitted.pca_components, dtype=float)
        values = (values - np.asarray(fitted.pca_mean)) @ components.T
    return pd.DataFrame(values, index=table.index.copy(), columns=fitted.columns)
