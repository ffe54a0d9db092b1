"""Parameters a request leaves free, filled with what real tiles with the requested ones have.

A generator is conditioned on every parameter it was trained on. A parameter
file names a few; the rest used to be asked as the training mean, whatever
was asked of the others. That asks for tiles no city has: a Copenhagen-like
district with 5 % of its streets major roads and 110 intersections a km²,
but the average city's major-road density, got the average city's arterials
(`city-64` measured a major-road share of 0.116 on its 1 km layouts).

A free parameter is asked instead as what the real training tiles whose
requested parameters are nearest the request have, on average: the
:data:`NEIGHBOURS` nearest (standardized as the generator sees them, among
the tiles a shipped generator's selection calibration holds,
:class:`urbangen.generate.selection.Calibration`, that know every requested
parameter), each free parameter averaged over those of them that know it.
Nearest neighbours rather than a line: the parameters are tied by identities
no line keeps (a major-road share is a major-road density over every
street's), and a line fitted to the Copenhagen-like request above asked for
4.8 km/km² of major road, a share of 0.09 where it asked 0.05; real tiles
with such requests have what the request implies. It is the request's most
likely completion among real tiles, not a draw from their spread. Without a
calibration (a model of your own), free parameters stay at the training mean.
"""

from __future__ import annotations

import numpy as np

from urbangen.conditioning import ParameterScaler
from urbangen.generate.selection import Calibration

#: A free parameter is the mean of this many real training tiles nearest the request.
NEIGHBOURS = 16


def known_requests(calibration: Calibration) -> np.ndarray:
    """(N, Q) whether each fitting tile knew each parameter of ``calibration.request_names``.

    A tile's requests are stored standardized with the unknown ones at 0; a
    parameter with a line is known where the tile's residual is (request and
    measurement both known), any other where the stored value is not 0.
    """
    assert calibration.requests is not None and calibration.residuals is not None
    known = calibration.requests != 0
    lines = list(calibration.lines)
    for q, name in enumerate(calibration.request_names):
        if name in calibration.lines:
            known[:, q] = np.isfinite(calibration.residuals[:, lines.index(name)])
    return known


def impute_free(fields: np.ndarray, names: list[str], scaler: ParameterScaler,
                calibration: Calibration | None) -> np.ndarray:
    """``fields`` (..., P) in units, NaN where free, with each free parameter its line on the requested ones.

    Parameters
    ----------
    fields
        Parameter values per pixel, in the order of ``names``; a free
        parameter is NaN everywhere.
    names
        The generator's parameters, as ``scaler`` and the calibration's
        requests order them.
    scaler
        The generator's standardization.
    calibration
        Real training tiles' standardized requests (None, or one without
        them, or of other parameters: ``fields`` come back unchanged).
    """
    if (calibration is None or calibration.requests is None or calibration.residuals is None
            or tuple(calibration.request_names) != tuple(names)):
        return fields
    free = [j for j in range(len(names)) if np.isnan(fields[..., j]).all()]
    asked = [j for j in range(len(names)) if j not in free]
    if not free or not asked:
        return fields
    from scipy.spatial import cKDTree

    known = known_requests(calibration)
    pool = np.flatnonzero(known[:, asked].all(axis=1))
    if len(pool) < NEIGHBOURS:
        return fields
    mean, std = np.asarray(scaler.mean, np.float64), np.asarray(scaler.std, np.float64)
    z = ((fields[..., asked] - mean[asked]) / std[asked]).reshape(-1, len(asked))
    # Fields vary smoothly over a layout: look each distinct request up once.
    distinct, where = np.unique(z, axis=0, return_inverse=True)
    _, nearest = cKDTree(calibration.requests[pool][:, asked]).query(distinct, k=NEIGHBOURS)
    rows = pool[nearest]  # (distinct requests, NEIGHBOURS)
    out = fields.copy()
    for j in free:
        counted = known[rows, j]
        if not counted.any():
            continue  # no neighbour knows it: the training mean, as before
        # Mean over the neighbours that know it; a request none of whose neighbours do gets the training mean (0).
        filled = (np.where(counted, calibration.requests[rows, j], 0.0).sum(axis=1)
                  / np.maximum(counted.sum(axis=1), 1))
        value = filled[where.reshape(-1)] * std[j] + mean[j]
        # Every parameter is at least 0; a share whose neighbours all have none comes back as rounding noise.
        out[..., j] = np.where(value < 1e-9 * std[j], 0.0, value).reshape(fields.shape[:-1])
    return out
