"""Rebuild the demo folders from the held-out validation split (never trained on).

    python examples/make_examples.py

Writes examples/clean/ (16 faces, 64x64, CelebA crop) and examples/gray_blur/ (their
observations, made with `mimic corrupt`'s corruption and seed 0).
"""
from pathlib import Path

import numpy as np
import torch

from mimic.corruptions import get_corruption
from mimic.data import default_data_root, list_images, load_image_folder, split_files
from mimic.io import save_png, to_tensor, to_uint8

HERE = Path(__file__).resolve().parent
N = 16

files = split_files(list_images(default_data_root() / "celeba"), holdout=1000).val[-N:]
clean = load_image_folder(files, cache=False)
obs = to_uint8(get_corruption("gray_blur")(to_tensor(clean), generator=torch.Generator().manual_seed(0)))
for f, c, o in zip(files, clean, obs):
    save_png(HERE / "clean" / f"{f.stem}.png", c)
    save_png(HERE / "gray_blur" / f"{f.stem}.png", o)
print(f"wrote {N} clean faces and their gray_blur observations")
