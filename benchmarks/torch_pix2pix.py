"""The pix2pix train step in PyTorch: the reference for ``bench_train.py``.

The same architecture, losses and optimizer as :mod:`urbangen.models.pix2pix`
and :mod:`urbangen.training.pix2pix` (U-Net generator with batch norm and
dropout, 70x70 PatchGAN, BCE + lambda * L1, Adam 2e-4 with beta1 0.5, one D
step then one G step), written as the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix) writes it. ``upsample="subpixel"`` is
our decoder (3x3 conv + pixel shuffle); ``"transpose"`` is the reference's
``ConvTranspose2d(4, stride 2, padding 1)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn


def device_and_precision(precision: str) -> tuple[str, contextlib.AbstractContextManager]:
    """CUDA where there is one, else the CPU; and the context that computes in ``precision`` there
    (``bfloat16``: PyTorch's own mixed precision, ``torch.autocast``, float32 weights)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if precision == "bfloat16"
                else contextlib.nullcontext())
    return device, autocast


def run_and_wait(fn: Callable[[], object], n: int, device: str) -> None:
    """``fn`` ``n`` times, then wait for the device: CUDA's calls return before their work is done."""
    for _ in range(n):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()


def _up(cin: int, cout: int, mode: str, bias: bool) -> nn.Module:
    if mode == "subpixel":
        return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=bias), nn.PixelShuffle(2))
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)


class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int = 8, ngf: int = 64,
                 upsample: str = "subpixel") -> None:
        super().__init__()
        feats = [ngf * min(2**i, 8) for i in range(depth)]
        self.depth = depth
        self.down = nn.ModuleList()
        for i in range(depth):
            cin = in_channels if i == 0 else feats[i - 1]
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, feats[i], 4, stride=2, padding=1, bias=False))
            if 0 < i < depth - 1:
                layers.append(nn.BatchNorm2d(feats[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            cin = feats[i] if i == depth - 1 else 2 * feats[i]
            layers = [nn.ReLU(), _up(cin, feats[i - 1], upsample, bias=False), nn.BatchNorm2d(feats[i - 1])]
            if depth - 4 <= i <= depth - 2:
                layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.ReLU(), _up(2 * feats[0], out_channels, upsample, bias=True), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        y = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = torch.cat([block(y), skip], dim=1)
        return self.out(y)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ndf * min(2 ** (i - 1), 8), ndf * min(2**i, 8), 4, stride=stride, padding=1,
                                 bias=False),
                       nn.BatchNorm2d(ndf * min(2**i, 8)), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * min(2**n_layers, 8), 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class Pix2PixStep:
    """One D step then one G step, as the reference ``optimize_parameters``."""

    def __init__(self, cond_channels: int, out_channels: int, tile_px: int = 256, upsample: str = "subpixel",
                 lambda_l1: float = 100.0, channels_last: bool = True, device: str = "cpu") -> None:
        depth = tile_px.bit_length() - 1
        self.G = UNetGenerator(cond_channels, out_channels, depth, upsample=upsample)
        self.D = PatchDiscriminator(cond_channels + out_channels)
        self.G.apply(_init)
        self.D.apply(_init)
        self.G.to(device)
        self.D.to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.G.to(memory_format=self.memory_format)
        self.D.to(memory_format=self.memory_format)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.bce = nn.BCEWithLogitsLoss()
        self.lambda_l1 = lambda_l1

    def __call__(self, cond: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
        cond = cond.to(memory_format=self.memory_format)
        real = real.to(memory_format=self.memory_format)
        fake = self.G(cond)
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        pred_fake = self.D(torch.cat([cond, fake.detach()], 1))
        pred_real = self.D(torch.cat([cond, real], 1))
        loss_d = 0.5 * (self.bce(pred_fake, torch.zeros_like(pred_fake))
                        + self.bce(pred_real, torch.ones_like(pred_real)))
        loss_d.backward()
        self.opt_d.step()
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        pred_fake = self.D(torch.cat([cond, fake], 1))
        loss_g = self.bce(pred_fake, torch.ones_like(pred_fake)) + self.lambda_l1 * (fake - real).abs().mean()
        loss_g.backward()
        self.opt_g.step()
        # The losses stay on the device: reading them each step would wait for the GPU, which the
        # reference's training loop does only when it prints.
        return loss_d.detach(), loss_g.detach()
