"""Channel pruning of an RLFN to a narrower width (how the NTIRE entry went to 46/48 channels).

Criterion: L1 norm of filters. Channels are grouped by what must share an index:
- trunk group 0: conv_1's output, block_1's input, every residual add into it (c3_r of block 1)
  and conv_2's output (the global skip adds it to conv_1's output);
- trunk group i (1..blocks): block_i's output (c5 and ESA's conv4), block_{i+1}'s input and
  c3_r output (its local skip), or conv_2's input after the last block;
- the inner channels of each block (c1_r out, c2_r in/out, c3_r in).
A group keeps the channels whose producing filters have the largest summed L1 norm. All trunk
groups go to `channels`, all inner groups to `mid_channels`.
"""

from __future__ import annotations

import torch

from rlfn_video.models.rlfn import RLFN, Arch


def _norms(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter, normalised so layers of different size weigh the same."""
    n = w.detach().abs().flatten(1).sum(1)
    return n / n.mean().clamp_min(1e-12)


def _keep(score: torch.Tensor, k: int) -> torch.Tensor:
    if k > score.numel():
        raise ValueError(f"cannot prune {score.numel()} channels up to {k}")
    return score.topk(k).indices.sort().values


def _conv(sd: dict, name: str, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> None:
    w = sd[f"{name}.weight"]
    if out_idx is not None:
        w = w[out_idx]
        sd[f"{name}.bias"] = sd[f"{name}.bias"][out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    sd[f"{name}.weight"] = w.contiguous()


def prune(model: RLFN, channels: int, mid_channels: int) -> RLFN:
    """A new, narrower RLFN holding the kept weights of `model` (which is left unchanged)."""
    a = model.arch
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    b = [f"block_{i}" for i in range(1, a.blocks + 1)]
    # Scores of each trunk group from the filters that write into it.
    trunk_scores = [_norms(sd["conv_1.weight"]) + _norms(sd["conv_2.weight"]) + _norms(sd[f"{b[0]}.c3_r.weight"])]
    for i, blk in enumerate(b):
        s = _norms(sd[f"{blk}.c5.weight"]) + _norms(sd[f"{blk}.esa.conv4.weight"])
        if i + 1 < len(b):
            s = s + _norms(sd[f"{b[i + 1]}.c3_r.weight"])
        trunk_scores.append(s)
    trunk = [_keep(s, channels) for s in trunk_scores]
    mids = [_keep(_norms(sd[f"{blk}.c1_r.weight"]) + _norms(sd[f"{blk}.c2_r.weight"]), mid_channels) for blk in b]

    _conv(sd, "conv_1", out_idx=trunk[0])
    for i, blk in enumerate(b):
        t_in, t_out, m = trunk[i], trunk[i + 1], mids[i]
        _conv(sd, f"{blk}.c1_r", out_idx=m, in_idx=t_in)
        _conv(sd, f"{blk}.c2_r", out_idx=m, in_idx=m)
        _conv(sd, f"{blk}.c3_r", out_idx=t_in, in_idx=m)
        _conv(sd, f"{blk}.c5", out_idx=t_out, in_idx=t_in)
        _conv(sd, f"{blk}.esa.conv1", in_idx=t_out)
        _conv(sd, f"{blk}.esa.conv4", out_idx=t_out)
    _conv(sd, "conv_2", out_idx=trunk[0], in_idx=trunk[-1])
    _conv(sd, "upsampler.0", in_idx=trunk[0])

    small = RLFN(Arch(channels=channels, mid_channels=mid_channels, blocks=a.blocks, scale=a.scale,
                      esa_channels=a.esa_channels))
    small.load_state_dict(sd, strict=True)
    return small
