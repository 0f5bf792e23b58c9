"""Clustering: k-means with k-means++ starts, and a Gaussian mixture fitted by EM.

Round blobs (kp.datasets.blobs): k-means (kp.cluster.KMeans) recovers them (adjusted Rand index
about 1 against the true blobs, kp.cluster.adjusted_rand_score), and its inertia against k bends
at the true k (the elbow). Elongated, tilted blobs: k-means, which only knows distances to centres,
cuts them wrongly, while a mixture of Gaussians with full covariances (kp.cluster.GaussianMixture)
fits their shapes; its EM iterations never lower the log-likelihood (checked and printed).
Pictures: the clusters each method finds (round.png, elongated.png) and the log-likelihood per EM
iteration (learning_curve.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.cluster import GaussianMixture, KMeans, adjusted_rand_score

from .._common import add_sized_option, knet_line, make_parser, parse, positive, run_script, save_curve
from ._classical import announce

NAME = "clustering"
#: The elongated problem: three parallel, tilted cigars.
ELONGATED_CENTRES = np.array([[0.0, 0.0], [0.0, 4.0], [0.0, 8.0]])


def stretch_matrix(angle=0.7, long=3.0, short=0.3):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]]) @ np.diag([long, short])


def build_parser(prog=None):
    parser = make_parser(f"lab-{NAME}", __doc__, prog or f"knetpy lab {NAME}")
    add_sized_option(parser, "--points", 300, 150, help="points per cluster")
    parser.add_argument("--clusters", type=positive(int), default=4, help="round blobs (default: %(default)s)")
    return parser


def main(argv=None, prog=None):
    """Cluster both problems with both methods; returns the agreements and the EM log-likelihoods."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    k = args.clusters
    xr, yr = kp.datasets.blobs(args.points, centers=k, std=1.0, seed=args.seed)
    km = KMeans(k, seed=args.seed).fit(xr)
    round_ari = adjusted_rand_score(yr, km.labels_)
    print(knet_line("data", "round", "method", "kmeans", "k", k, "ari", round_ari, "iterations", km.n_iter_))
    inertia = {j: KMeans(j, seed=args.seed).fit(xr).inertia_ for j in range(1, 2 * k + 1)}
    print("k-means inertia by k: " + ", ".join(f"{j}: {v:.0f}" for j, v in inertia.items()))

    xe, ye = kp.datasets.blobs(args.points, centers=ELONGATED_CENTRES, std=1.0, stretch=stretch_matrix(),
                               seed=args.seed)
    n = len(ELONGATED_CENTRES)
    km_e = KMeans(n, seed=args.seed).fit(xe)
    gmm = GaussianMixture(n, seed=args.seed).fit(xe)
    km_ari, gmm_ari = adjusted_rand_score(ye, km_e.labels_), adjusted_rand_score(ye, gmm.predict(xe))
    ll = gmm.log_likelihood_history_
    worst_step = float(np.min(np.diff(ll))) if len(ll) > 1 else 0.0
    print(knet_line("data", "elongated", "method", "kmeans", "ari", km_ari))
    print(knet_line("data", "elongated", "method", "gmm", "ari", gmm_ari, "iterations", gmm.n_iter_,
                    "loglik", ll[-1]))
    print(f"EM log-likelihood per sample: {ll[0]:.4f} -> {ll[-1]:.4f} in {len(ll)} iterations; "
          f"its smallest change {worst_step:+.2e} ({'never decreased' if worst_step >= -1e-9 else 'DECREASED'})")
    result = {"round_ari": round_ari, "inertia": inertia, "elongated_kmeans_ari": km_ari,
              "elongated_gmm_ari": gmm_ari, "log_likelihood": ll, "monotone": worst_step >= -1e-9, "pictures": []}
    if not args.no_plot:
        out = Path(args.out)

        def coloured_as(truth, x, scores_of):
            """Cluster scores with each cluster moved to the true label most of its points have (cluster
            numbers are arbitrary), so the regions take the colours of their blobs."""
            found = scores_of(x).argmax(1)
            to_label = np.array([np.bincount(truth[found == j], minlength=1).argmax() if (found == j).any() else j
                                 for j in range(scores_of(x[:1]).shape[1])])
            if len(set(to_label)) < len(to_label):  # not one-to-one: keep the clusters' own numbers
                return scores_of
            return lambda pts: scores_of(pts)[:, np.argsort(to_label)]

        def near(model, truth, x):
            return coloured_as(truth, x, lambda pts: -model.transform(pts))

        result["pictures"].append(announce(kp.plot.decision_boundary(
            {f"k-means (ARI {round_ari:.2f})": near(km, yr, xr)}, xr, yr, out / "round.png",
            title="Round blobs: the colours of the points are the true blobs")))
        result["pictures"].append(announce(kp.plot.decision_boundary(
            {f"k-means (ARI {km_ari:.2f})": near(km_e, ye, xe),
             f"Gaussian mixture (ARI {gmm_ari:.2f})": coloured_as(ye, xe, gmm.predict_proba)},
            xe, ye, out / "elongated.png", title="Elongated blobs")))
        result["pictures"].append(save_curve({"EM log-likelihood per sample": ll}, out, xlabel="EM iteration",
                                             title="Gaussian mixture: log-likelihood per EM iteration"))
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
