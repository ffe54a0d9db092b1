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
parameter and the free one: 78 % of them know no building parameter, and a
street-only request's 16 nearest tiles often held none that did). Requests
are looked up to a thousandth of a training spread, so a field over a large
layout costs one search per distinct value. With a street network given
(``streets:``), the buildings stage draws alone, without a calibration, and
its free parameters stay at the training mean.
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

from data_pipeline.errors import RunSpecError
from urbangen.conditioning import ParameterScaler
from urbangen.generate.selection import Calibration

#: A free parameter is the mean of this many real training tiles nearest the request.
NEIGHBOURS = 16


def known_requests(calibration: Calibration) -> np.ndarray:
    """(N, Q) whether each fitting tile knew each parameter of ``calibration.request_names``.

    A tile's requests are stored standardized with the unknown ones at 0; a
    parameter with a line is known where the tile's residual is (request and
    measurement both known: a tile whose measurement failed counts as not
    knowing it, a few sparse tiles' orientation entropy), any other where the
    stored value is not 0.

    Raises
    ------
    RunSpecError
        If the calibration holds no fitting tiles' requests and residuals.
    """
    if calibration.requests is None or calibration.residuals is None:
        raise RunSpecError(f"the calibration fitted on {calibration.fitted_on} holds no fitting tiles' requests: "
                           "refit it with scripts/fit_selection_calibration.py")
    known = calibration.requests != 0
    lines = list(calibration.lines)
    for q, name in enumerate(calibration.request_names):
        if name in calibration.lines:
            known[:, q] = np.isfinite(calibration.residuals[:, lines.index(name)])
    return known


def impute_free(fields: np.ndarray, names: list[str], scaler: ParameterScaler,
                calibration: Calibration | None) -> np.ndarray:
    """``fields`` (..., P) in units, NaN where free, with each free parameter the mean of the real training
    tiles nearest the request (see the module).

    Parameters
    ----------
    fields
        Parameter values per pixel, in the order of ``names``; a free
        parameter is NaN everywhere.
    names
        The generator's parameters, in ``scaler``'s order.
    scaler
        The generator's standardization (the calibration's requests are
        standardized by it).
    calibration
        Real training tiles' standardized requests. Without one, or one
        without the fitting tiles' requests, ``fields`` come back unchanged;
        a free parameter it does not hold stays free, and so does every one
        when a requested parameter is not among its requests.

    Returns
    -------
    numpy.ndarray
        A copy of ``fields`` with the free parameters filled.
    """
    if calibration is None or calibration.requests is None or calibration.residuals is None:
        return fields
    column = {name: q for q, name in enumerate(calibration.request_names)}
    free = [j for j in range(len(names)) if np.isnan(fields[..., j]).all() and names[j] in column]
    asked = [j for j in range(len(names)) if not np.isnan(fields[..., j]).all()]
    if not free or not asked or any(names[j] not in column for j in asked):
        return fields
    from scipy.spatial import cKDTree

    known = known_requests(calibration)
    asked_q = [column[names[j]] for j in asked]
    mean, std = np.asarray(scaler.mean, np.float64), np.asarray(scaler.std, np.float64)
    # Fields vary smoothly over a layout: look each distinct request up once, to a thousandth of a spread.
    z = np.round((fields[..., asked] - mean[asked]) / std[asked], 3).reshape(-1, len(asked))
    distinct, where = np.unique(z, axis=0, return_inverse=True)
    out = fields.copy()
    for j in free:
        q = column[names[j]]
        # Among the tiles that knew every requested parameter and this one.
        pool = np.flatnonzero(known[:, asked_q].all(axis=1) & known[:, q])
        if len(pool) < NEIGHBOURS:
            continue  # too few: the training mean, as before
        _, nearest = cKDTree(calibration.requests[pool][:, asked_q]).query(distinct, k=NEIGHBOURS)
        value = calibration.requests[pool[nearest], q].mean(axis=1)[where.reshape(-1)] * std[j] + mean[j]
        # Every parameter is at least 0; a share whose neighbours all have none comes back as float32 rounding.
        value = np.where(value < 1e-6 * std[j], 0.0, value)
        out[..., j] = value.reshape(fields.shape[:-1])
    return out
