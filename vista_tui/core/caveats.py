"""What a map cannot say: warnings shown with a map's summary (at the end of `vista build` and in `vista summary`)."""

from __future__ import annotations

FEW_CONTEXTS = 250
"""Below this many contexts, a map's cluster tree and fidelity mean little.

Why 250: the cluster step's default HDBSCAN `min_cluster_size` is max(5, N // 50)
(pipeline/cluster.py), which stops growing with N at N = 250 and stays at its floor of 5 below
it. Under 250 contexts a "sub-sense" may be five points, a clump the UMAP layout makes out of
noise as readily as out of meaning, so the tree's splits are not evidence. The fidelity sweep
(pipeline/fidelity.py) is thin there too: k runs from 0.25 % to 50 % of N, so its low end is one
or two neighbours per context, and a few dozen contexts leave only as many distinct k as there
are integers up to N/2 (13 for the 26 contexts that prompted this warning): its peak is noise.
"""


def few_contexts_warning(n_contexts: int) -> str | None:
    """One line warning that a map of `n_contexts` contexts is too small to read much into; None when it is not."""
    if n_contexts >= FEW_CONTEXTS:
        return None
    return (
        f"warning: only {n_contexts:,} contexts (fewer than {FEW_CONTEXTS}): the cluster tree and the fidelity "
        "of so few mean little; a larger corpus gives more"
    )
