"""Probe for the compression target (issue 7): a conv autoencoder with a *global* dense
bottleneck (L int8 values per image) instead of the conv space's spatial latent.

Pre-trains one such net (45k parameters) on pooled digits-res train tasks at 16x16 for
600 Adam steps, fine-tunes it K=20 steps per held-out task, and compares its int8-latent
PSNR with a per-task int8 PCA codec at L coefficients and JPEG's entropy-coded payload at
<= L bytes (header not counted), on 8 test tasks. Not part of the product: a measurement
that decides the next step (~2 minutes on one CPU core).

    python scripts/dense_bottleneck_probe.py
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from metaae_edge.tasks import create_family

R, L, PRETRAIN_STEPS, K, TASKS = 16, 32, 600, 20, 8


class DenseAE(nn.Module):
    """conv /2 16c -> conv /2 32c -> dense L -> dense -> x2 conv 16c -> x2 conv 16c -> 1."""

    def __init__(self) -> None:
        super().__init__()
        g = R // 4
        self.e1, self.e2 = nn.Conv2d(1, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1)
        self.fe, self.fd = nn.Linear(32 * g * g, L), nn.Linear(L, 32 * g * g)
        self.d2, self.d1 = nn.Conv2d(32, 16, 3, 1, 1), nn.Conv2d(16, 16, 3, 1, 1)
        self.out = nn.Conv2d(16, 1, 3, 1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fe(F.hardswish(self.e2(F.hardswish(self.e1(x)))).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fd(z).view(-1, 32, R // 4, R // 4)
        h = F.hardswish(self.d2(F.interpolate(h, scale_factor=2)))
        h = F.hardswish(self.d1(F.interpolate(h, scale_factor=2)))
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([10 * np.log10(1 / max(float(np.mean((p - q) ** 2)), 1e-10))
                          for p, q in zip(a, b)]))


def jpeg_at(img: np.ndarray, nbytes: int) -> tuple[np.ndarray, int]:
    """The highest-quality JPEG whose payload (after the SOS marker) fits ``nbytes``."""
    best = None
    for quality in range(1, 96):
        buf = io.BytesIO()
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(
            buf, "JPEG", quality=quality)
        data = buf.getvalue()
        payload = len(data) - data.find(b"\xff\xda") - 2
        if payload <= nbytes or best is None:
            best = (np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255, payload)
    return best


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fam = create_family("digits-res", resolution=R)
    net = DenseAE()
    print(sum(p.numel() for p in net.parameters()), "parameters")
    opt, t0 = torch.optim.Adam(net.parameters(), 3e-3), time.time()
    for step in range(PRETRAIN_STEPS):
        t = fam.sample("train", step, objective="reconstruct", n_support=32)
        x = torch.as_tensor(np.concatenate([t.support, t.query]).reshape(-1, 1, R, R))
        loss = F.mse_loss(net(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"pre-trained in {time.time() - t0:.0f} s, loss {loss.item():.4f}")
    rows = []
    for i in range(TASKS):
        t = fam.sample("test", i, objective="reconstruct", n_support=32)
        s, q = torch.as_tensor(t.support.reshape(-1, 1, R, R)), t.query.reshape(-1, 1, R, R)
        m = DenseAE()
        m.load_state_dict(net.state_dict())
        o = torch.optim.Adam(m.parameters(), 1e-3)
        for _ in range(K):
            loss = F.mse_loss(m(s), s)
            o.zero_grad()
            loss.backward()
            o.step()
        with torch.no_grad():  # int8 latent, per-dimension scale fitted on the support set
            scale = m.encode(s).abs().amax(0).clamp_min(1e-8) / 127
            z = (m.encode(torch.as_tensor(q)) / scale).round().clamp(-127, 127) * scale
            ours = psnr(m.decode(z).clamp(0, 1).numpy(), q)
        sup, mu = t.support, t.support.mean(0)
        basis = np.linalg.svd(sup - mu, full_matrices=False)[2][:L]
        pscale = np.abs((sup - mu) @ basis.T).max(0) / 127
        codes = np.clip(np.round((t.query - mu) @ basis.T / pscale), -127, 127)
        pca = psnr((codes * pscale @ basis + mu).reshape(q.shape), q)
        jp = [jpeg_at(img[0], L) for img in q]
        jpg = psnr(np.stack([j[0][None] for j in jp]), q)
        rows.append((ours, pca, jpg, float(np.mean([j[1] for j in jp]))))
        print(f"task {i}: dense AE {ours:.2f} dB at {L} B, PCA {pca:.2f} dB at {L} B, "
              f"JPEG {jpg:.2f} dB at {rows[-1][3]:.1f} B payload", flush=True)
    m_ours, m_pca, m_jpg, m_b = np.mean(rows, 0)
    print(f"mean: dense AE {m_ours:.2f} dB, PCA {m_pca:.2f} dB, JPEG {m_jpg:.2f} dB at "
          f"{m_b:.1f} B")


if __name__ == "__main__":
    main()
