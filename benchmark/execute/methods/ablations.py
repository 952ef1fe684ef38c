"""GAIN's ablations, so that an effect of GAIN_ext can be attributed to a component (Li et al., CVPR 2018).

`ext_only`: `L_cl + omega_e L_e` (GAIN_ext without attention mining: alpha = 0); `am_only`: GAIN (`L_cl + alpha
L_am`) without the warm-up of plain classification. Both reuse gain.py's losses; nothing here repeats their math.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from benchmark.execute.methods.gain import GAIN, GAINExt
from benchmark.execute.models import SplitModel

_MINING_ONLY = ("alpha", "sigma", "omega", "masked_bn", "attention_control")


class ExtOnly(GAINExt):
    """GAIN_ext with `alpha = 0` fixed: `L_cl + omega_e L_e` on the pixel-labelled images, after the same warm-up."""

    name = "ext_only"
    alpha: ClassVar[float] = 0.0
    attention_control: ClassVar[str] = "attended"
    HPARAMS = {k: v for k, v in GAINExt.HPARAMS.items() if k not in _MINING_ONLY}

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        parts = super().training_loss(model, batch, epoch=epoch)
        del parts["am"]
        return parts


class AMOnly(GAIN):
    """GAIN with `warmup_epochs = 0` fixed: attention mining from the first step."""

    name = "am_only"
    warmup_epochs: ClassVar[int] = 0
    HPARAMS = {k: v for k, v in GAIN.HPARAMS.items() if k != "warmup_epochs"}
