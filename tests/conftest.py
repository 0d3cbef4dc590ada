import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def tiny_prior_dir(tmp_path_factory) -> Path:
    """A randomly initialised dcgan64 prior folder (fast; not a trained model)."""
    from safetensors.torch import save_file

    from mimic.priors import sha256_file
    from mimic.priors.models import DCGAN64Discriminator, DCGAN64Generator, init_dcgan_weights

    d = tmp_path_factory.mktemp("tiny_prior")
    torch.manual_seed(0)
    G, D = DCGAN64Generator(), DCGAN64Discriminator()
    init_dcgan_weights(G), init_dcgan_weights(D)
    # calibrate G's batch-norm statistics so that eval-mode outputs have a realistic scale
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    G.train()
    with torch.no_grad():
        for _ in range(4):
            G(torch.rand(64, 100) * 2 - 1)
    G.eval()
    save_file(G.state_dict(), str(d / "generator.safetensors"))
    save_file(D.state_dict(), str(d / "discriminator.safetensors"))
    (d / "config.json").write_text(json.dumps({"arch": "dcgan64", "nz": 100}))
    (d / "card.json").write_text(json.dumps({"sha256": {f: sha256_file(d / f) for f in
                                                        ("generator.safetensors", "discriminator.safetensors")}}))
    return d


@pytest.fixture(scope="session")
def faces() -> np.ndarray:
    """16 real held-out CelebA faces (uint8, 16x64x64x3) from the validation split, or skip."""
    from mimic.data import default_data_root, list_images, load_image_folder, split_files

    root = default_data_root() / "celeba"
    if not root.exists():
        pytest.skip("CelebA data not available")
    split = split_files(list_images(root), holdout=1000)
    return load_image_folder(split.val[:16], cache=False)


def _write_prior(d: Path, G, D, arch: str) -> Path:
    from safetensors.torch import save_file

    from mimic.priors import sha256_file

    save_file(G.state_dict(), str(d / "generator.safetensors"))
    save_file(D.state_dict(), str(d / "discriminator.safetensors"))
    (d / "config.json").write_text(json.dumps({"arch": arch, "nz": 100}))
    (d / "card.json").write_text(json.dumps({"sha256": {f: sha256_file(d / f) for f in
                                                        ("generator.safetensors", "discriminator.safetensors")}}))
    return d


@pytest.fixture(scope="session")
def tiny_fmnist_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(prior folder, classifier folder): randomly initialised fmnist28 GAN and classifier (not trained)."""
    from safetensors.torch import save_file

    from mimic.priors import sha256_file
    from mimic.priors.models import FMNIST28Discriminator, FMNIST28Generator, FMNISTClassifier

    torch.manual_seed(0)
    G, D = FMNIST28Generator(), FMNIST28Discriminator()
    G.train()
    with torch.no_grad():  # realistic batch-norm statistics for eval mode
        G(torch.rand(64, 100) * 2 - 1)
    G.eval()
    p = _write_prior(tmp_path_factory.mktemp("tiny_fmnist28"), G, D, "fmnist28")
    c = tmp_path_factory.mktemp("tiny_classifier")
    save_file(FMNISTClassifier().state_dict(), str(c / "classifier.safetensors"))
    (c / "card.json").write_text(json.dumps({"sha256": {"classifier.safetensors": sha256_file(c / "classifier.safetensors")}}))
    return p, c


@pytest.fixture(scope="session")
def fmnist_root() -> Path:
    from mimic.data import default_data_root

    root = default_data_root() / "fashion-mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST data not available")
    return root
