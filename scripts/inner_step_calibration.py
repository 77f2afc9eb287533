"""Why Meta-SGD scales the Adam direction: plain SGD steps vs Adam from a fresh supernet
on 4 manifold meta-training tasks (mean query loss after 10 inner steps; docs/learners.md).

    python scripts/inner_step_calibration.py
"""

import torch

from metaae_edge.meta import InnerConfig, inner_loop, make_batch, task_loss
from metaae_edge.meta.inner import LossConfig
from metaae_edge.space import create_supernet
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family


def main() -> None:
    torch.set_num_threads(1)
    family = create_family("manifold")
    torch.manual_seed(0)
    model = create_supernet(SupernetConfig())
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    batches = [make_batch(family.sample("train", i), seed=i) for i in range(4)]

    def mean_query(inner: InnerConfig | None) -> float:
        out = []
        for b in batches:
            p = params if inner is None else inner_loop(model, params, b, inner)
            out.append(float(task_loss(model, p, b.query(), LossConfig(0.1))))
        return sum(out) / len(out)

    print("K0", mean_query(None))
    print("adam", mean_query(InnerConfig(steps=10)))
    for lr_w in (0.1, 0.3, 1.0, 3.0):
        for lr_a in (0.3, 1.0):
            print("sgd", lr_w, lr_a,
                  mean_query(InnerConfig(steps=10, optimizer="sgd", lr_w=lr_w, lr_a=lr_a)))


if __name__ == "__main__":
    main()
