"""The devices this machine can run models on: the CPU always, CUDA and MPS where present.

Tests parametrised over `DEVICES` run everywhere and also cover the accelerator path (half
precision, tensors moved to the device) on a machine that has one.
"""

from __future__ import annotations

import torch

DEVICES = [
    "cpu",
    *(["cuda"] if torch.cuda.is_available() else []),
    *(["mps"] if torch.backends.mps.is_available() else []),
]
