"""Accuracy and area from a stratified reference sample, with standard errors and 95 % intervals.

The estimators of Olofsson et al. (2014), *Good practices for estimating area and assessing accuracy
of land change*, Remote Sensing of Environment 148, 42-57, for stratified random sampling where the
strata are the map classes (equations 2-10 of the paper, numbered here as there):

  W_i = mapped share of class i,  n_ij = sample count, map class i (row), reference class j (column)
  p_ij = W_i n_ij / n_i.                                      (eq. 4, error matrix in area proportions)
  O    = sum_j p_jj,         V(O)   = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)             (eq. 1, 5)
  U_i  = p_ii / p_i.,        V(U_i) = U_i (1 - U_i) / (n_i. - 1)                          (eq. 2, 6)
  P_j  = p_jj / p_.j,        V(P_j) = eq. 7 (with N_i. the mapped pixels of class i)      (eq. 3, 7)
  p_.k = sum_i W_i n_ik / n_i.,  S(p_.k)^2 = sum_i (W_i p_ik - p_ik^2) / (n_i. - 1)       (eq. 9, 10)
  A_k  = A_total p_.k,       S(A_k) = A_total S(p_.k),  95 % interval A_k ± 1.96 S(A_k)   (eq. 11, 12)

A simple random (or systematic) sample is estimated the same way with the map classes as post-strata
(n_i. then falls where it falls). Pure numpy: no raster, no vector, no QGIS.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import LabelError

Z95 = 1.96  # two-sided 95 % normal quantile, rounded as the paper does (its printed intervals use 1.96)


def _ci(value: Optional[float], se: Optional[float], z: float) -> Dict[str, Optional[float]]:
    if value is None or se is None:
        return {"estimate": value, "se": se, "ci95": None, "low": None, "high": None}
    half = z * se
    return {
        "estimate": float(value),
        "se": float(se),
        "ci95": float(half),
        "low": float(value - half),
        "high": float(value + half),
    }


def check_counts(counts: np.ndarray, mapped: np.ndarray, names: Sequence[str]) -> None:
    """Every mapped class needs at least two sample points (the variances divide by n_i. - 1)."""
    n_i = counts.sum(axis=1)
    for i, name in enumerate(names):
        if mapped[i] > 0 and n_i[i] < 2:
            what = "no reference point" if n_i[i] == 0 else "only one reference point"
            raise LabelError(
                f"map class {name} covers {int(mapped[i])} px but has {what}; every mapped "
                "class needs at least 2 (draw the sample with spectralx sample, e.g. "
                "--allocation min-per-class:50)"
            )


def estimate(
    counts, mapped_pixels, names: Sequence[str], pixel_area_ha: Optional[float] = None, z: float = Z95
) -> Dict[str, Any]:
    """Error matrix of sample counts (rows = map class, columns = reference class, same class order)
    and mapped pixels per map class -> accuracies and areas with standard errors and 95 % intervals.

    Areas are given in pixels, and in hectares when `pixel_area_ha` is known."""
    n = np.asarray(counts, dtype=np.float64)
    N = np.asarray(mapped_pixels, dtype=np.float64)
    k = len(names)
    if n.shape != (k, k) or N.shape != (k,):
        raise ValueError(f"counts must be {k} x {k} and mapped pixels {k} long")
    check_counts(n, N, names)
    keep = N > 0  # a class nobody mapped has no stratum: it only appears as a reference column
    total = N.sum()
    W = N / total
    n_i = n.sum(axis=1)
    safe_n = np.where(n_i > 0, n_i, 1.0)
    share = np.where(keep[:, None], n / safe_n[:, None], 0.0)  # n_ij / n_i.
    p = W[:, None] * share  # eq. 4
    denom = np.where(n_i > 1, n_i - 1, 1.0)
    diag = np.diag(share)  # U_i
    overall = float(np.trace(p))
    var_overall = float(np.sum(np.where(keep, W**2 * diag * (1 - diag) / denom, 0.0)))  # eq. 5
    p_col = p.sum(axis=0)  # p_.j
    var_p_col = np.sum(np.where(keep[:, None], (W[:, None] * p - p**2) / denom[:, None], 0.0), axis=0)  # eq. 10
    N_hat_col = np.sum(np.where(keep[:, None], N[:, None] * share, 0.0), axis=0)

    classes: List[Dict[str, Any]] = []
    for j in range(k):
        users = _ci(None, None, z)
        if keep[j]:
            u = diag[j]
            users = _ci(u, np.sqrt(u * (1 - u) / denom[j]), z)  # eq. 2, 6
        producers = _ci(None, None, z)
        if p_col[j] > 0:
            pa = p[j, j] / p_col[j]  # eq. 3
            others = sum(N[i] ** 2 * share[i, j] * (1 - share[i, j]) / denom[i] for i in range(k) if i != j and keep[i])
            own = N[j] ** 2 * (1 - pa) ** 2 * diag[j] * (1 - diag[j]) / denom[j] if keep[j] else 0.0
            producers = _ci(pa, np.sqrt((own + pa**2 * others) / N_hat_col[j] ** 2), z)  # eq. 7
        se_prop = float(np.sqrt(var_p_col[j]))
        area_px = _ci(total * p_col[j], total * se_prop, z)  # eq. 11, 12
        row = {
            "index": j,
            "name": names[j],
            "sample_points": int(n_i[j]),
            "reference_points": int(n[:, j].sum()),
            "mapped_pixels": int(N[j]),
            "mapped_proportion": float(W[j]),
            "users_accuracy": users,
            "producers_accuracy": producers,
            "area_proportion": _ci(p_col[j], se_prop, z),
            "area_pixels": area_px,
        }
        if pixel_area_ha:
            row["mapped_area_ha"] = float(N[j] * pixel_area_ha)
            row["area_ha"] = _ci(area_px["estimate"] * pixel_area_ha, area_px["se"] * pixel_area_ha, z)
        classes.append(row)
    return {
        "method": "Olofsson et al. 2014 (stratified estimator, strata = map classes)",
        "z": z,
        "sample_size": int(n.sum()),
        "mapped_pixels_total": int(total),
        "pixel_area_ha": pixel_area_ha,
        "overall_accuracy": _ci(overall, np.sqrt(var_overall), z),
        "error_matrix_counts": n.astype(int).tolist(),
        "error_matrix_proportions": p.tolist(),
        "classes": classes,
    }


__all__ = ["Z95", "estimate", "check_counts"]
