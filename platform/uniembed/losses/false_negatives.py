"""False-negative mitigation (RzenEmbed): which candidates of a row are not negatives.

A candidate of row ``i`` is dropped when

1. it lies more than ``margin`` above the positive, ``s_ic > s_ip + margin`` (UniME's
   filter: a target that much closer than the positive is most likely a right answer), or
2. it is a duplicate of the positive, ``cos(v_c, v_p) >= 1 - dup_eps`` (another row sharing
   the same target text, or a mined negative identical to the positive). The margin alone
   never drops these, since their similarity equals the positive's, yet they push the
   query away from its own answer.

Decisions are made on detached values: a mask takes no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from uniembed.losses._checks import check_dim, check_rank


def false_negative_mask(
    sim: Tensor, vectors: Tensor, margin: float | None, dup_eps: float = 1e-4
) -> Tensor:
    """``(n, c)`` bool, True where candidate ``c`` of row ``i`` is a false negative.

    Args:
        sim: ``(n, c)`` similarities, the positive in column 0 (never flagged).
        vectors: ``(n, c, d)`` the candidate vectors in the same order (for duplicates).
        margin: rule 1's margin; None turns rule 1 off.
        dup_eps: rule 2's tolerance on the cosine of a candidate to the positive; a
            negative value turns rule 2 off.
    """
    check_rank("sim", sim, 2, "(n, c)")
    check_rank("vectors", vectors, 3, "(n, c, d)")
    check_dim("vectors", vectors, 0, sim.shape[0], "the rows of sim")
    check_dim("vectors", vectors, 1, sim.shape[1], "the candidates of sim")
    with torch.no_grad():
        flagged = torch.zeros_like(sim, dtype=torch.bool)
        if sim.shape[1] == 0:
            return flagged
        if margin is not None:
            flagged |= sim > sim[:, :1] + margin
        if dup_eps >= 0:
            v = F.normalize(vectors.float(), dim=-1)
            to_pos = torch.einsum("ncd,nd->nc", v, v[:, 0])
            flagged |= to_pos >= 1.0 - dup_eps
        flagged[:, 0] = False
    return flagged
