"""Export a trained prior into pretrained/<name>/ with its model card, then measure it and ship the measured card.

    python -m tools.ship_prior --ckpt RUN/checkpoint.pt --name celeba64 [--weights ema|raw|auto]
    mimic prior-report celeba64 --n 200 --write-card runs/card-celeba64
    python -m tools.ship_prior --card runs/card-celeba64 --name celeba64
    python -m tools.ship_prior --classifier RUN_DIR --name fmnist_classifier
    python -m tools.ship_prior --group-stats --name celeba64 [--data DIR]
    python -m tools.ship_prior --reconstructor runs/uair/patch_band --name patch_band

``--weights auto`` (default) projects 25 *validation* faces with both the raw generator and
its exponential moving average and ships the better one. ``mimic prior-report`` never writes into
pretrained/: ``--card DIR`` installs the card it wrote (card.json, README.md, samples.png,
projection.png) after checking that its sha256 are those of the shipped weights. ``--group-stats`` measures the
statistics of the prior's training images (``mimic.groupstats``; the split its card names) and ships them as
group_stats.json with their sha256 in the card.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from mimic.io import save_json
from mimic.priors import pretrained_dir, sha256_file
from mimic.priors.report import checkpoint_val_projection
from mimic.priors.train import export_prior

CARDS = {
    "celeba64": {
        "summary": "DCGAN prior for 64x64 RGB faces (CelebA), z in [-1,1]^100",
        "architecture": "PyTorch reference DCGAN: G = ConvT 4x4 100->512 (4x4), 512->256, 256->128, 128->64, 64->3 + tanh "
                        "(BatchNorm+ReLU between); D = Conv 4x4 3->64, 64->128, 128->256, 256->512 (BatchNorm+LeakyReLU 0.2), "
                        "512->1 logit. Chosen over the paper's TensorFlow DCGAN (5x5, depths 1024-512-256-128) because it "
                        "trains about 3x faster on the 2-core CPU this prior was trained on; see the quality figures.",
        "data": "CelebA aligned faces, img_align_celeba (14,582 images: ids 000001-010000 at "
                "89x109 and 4,582 ids above 010000 at 178x218).",
        "terms": "CelebA is released for non-commercial research purposes only; these weights may only be used under the same terms.",
        "preprocessing": "centre square crop of side 108/178 of the width, area resize to 64x64, scale to [-1,1]; "
                         "random horizontal flips during training.",
    },
    "fmnist28": {
        "summary": "The MimicGAN paper's Fashion-MNIST GAN prior, 28x28 gray in [-1,1], z in [-1,1]^100",
        "architecture": "G: FC 100->1024 +ReLU+BN, FC 1024->128*7*7 +ReLU+BN, reshape, ConvT 4x4 s2 128->64 +ReLU (14x14), "
                        "ConvT 4x4 s2 64->1 +tanh (28x28). D: Conv 4x4 s2 1->64 +BN+LeakyReLU, Conv 4x4 s2 64->128 "
                        "+BN+LeakyReLU, FC 128*7*7->1024 +LeakyReLU+BN, FC 1024->1 (logit). The paper's layers; batch norm is applied "
                        "before each activation, as in the reference TensorFlow DCGAN code: in the literal order "
                        "(LeakyReLU, BN, then the last linear layer) D's mean logit is the same on every batch, and "
                        "training stalled at D loss 2 log 2 for two epochs.",
        "data": "Fashion-MNIST (Zalando SE), official 60,000 training images; the official 10,000 test images are held out.",
        "terms": "Fashion-MNIST is MIT-licensed (Zalando SE).",
        "preprocessing": "uint8 28x28 scaled to [-1,1]; no augmentation.",
    },
}

CLASSIFIER_CARD = {
    "summary": "A CNN classifier for Fashion-MNIST (10 classes), input (N,1,28,28) in [-1,1], output logits",
    "architecture": "Conv3x3 1->32, 32->32, maxpool, 64, 64, maxpool (BatchNorm+ReLU after every conv), "
                    "dropout 0.3, FC 3136->256 +ReLU, dropout 0.3, FC 256->10.",
    "data": "Fashion-MNIST official 60,000 training images; accuracy on the official 10,000 test images.",
    "terms": "Fashion-MNIST is MIT-licensed (Zalando SE).",
    "preprocessing": "uint8 scaled to [-1,1]; training augmentation: random horizontal flips and shifts of up to 2 pixels.",
}


def ship_classifier(run: Path, name: str) -> None:
    dest = pretrained_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "classifier.safetensors", dest / ".classifier.safetensors.tmp")
    (dest / ".classifier.safetensors.tmp").replace(dest / "classifier.safetensors")
    conf = json.loads((run / "config.json").read_text())
    save_json(dest / "config.json", {k: v for k, v in conf.items() if k != "history"})
    card = {"name": name, **CLASSIFIER_CARD,
            "training": {"epochs": conf["epochs"], "seed": conf["seed"], "optimizer": "AdamW lr 1e-3 (one-cycle to 3e-3), "
                         "weight decay 5e-4, batch 128, label smoothing 0.05", "train_seconds": conf["train_seconds"],
                         "hardware": conf["hardware"], "history": conf["history"]},
            "quality": {"test_accuracy": conf["test_accuracy"], "n_test": 10000},
            "sha256": {"classifier.safetensors": sha256_file(dest / "classifier.safetensors")}}
    save_json(dest / "card.json", card)
    from mimic.priors.report import write_card_markdown

    write_card_markdown(dest)
    print(f"shipped {name}: test accuracy {conf['test_accuracy']:.2f}% to {dest}")


RECONSTRUCTOR_CARD = {
    "data": "CelebA aligned faces, img_align_celeba, the training split of the priors (the last 1000 ids, sorted, held "
            "out); each training face corrupted once with its own theta, only the observation kept.",
    "terms": "CelebA is released for non-commercial research purposes only; these weights may only be used under the "
             "same terms.",
    "preprocessing": "centre square crop of side 108/178 of the width, area resize to 64x64, scale to [-1,1].",
}


def ship_reconstructor(run: Path, name: str) -> None:
    """Install a `mimic train reconstructor` run's exported network into pretrained/reconstructors/NAME, its sha256
    checked against the run's card, with the data's terms added to the card."""
    src = run / "reconstructor" if (run / "reconstructor").is_dir() else run
    card = json.loads((src / "card.json").read_text())
    f = "reconstructor.safetensors"
    if sha256_file(src / f) != card.get("sha256", {}).get(f):
        raise SystemExit(f"error: {src / f} does not match its card's sha256")
    dest = pretrained_dir() / "reconstructors" / name
    dest.mkdir(parents=True, exist_ok=True)
    for g in (f, "config.json"):
        tmp = dest / f".{g}.tmp"
        shutil.copyfile(src / g, tmp)
        tmp.replace(dest / g)
    grid = sorted((run / "samples").glob("epoch_*.png")) if (run / "samples").is_dir() else []
    if grid:
        shutil.copyfile(grid[-1], dest / "samples.png")
    save_json(dest / "card.json", {**card, "name": name, **RECONSTRUCTOR_CARD})
    print(f"shipped reconstructor {name} ({card['training'].get('steps')} steps) to {dest}")


def ship_card(card_dir: Path, name: str) -> None:
    """Install the model card that ``mimic prior-report NAME --write-card CARD_DIR`` wrote into pretrained/NAME."""
    from mimic.priors.report import CARD_FILES

    dest = pretrained_dir() / name
    card = json.loads((card_dir / "card.json").read_text())
    if not card.get("sha256") or "quality" not in card:
        raise SystemExit(f"error: {card_dir / 'card.json'} has no sha256 or no quality figures (not a prior-report card)")
    for f, want in card.get("sha256", {}).items():
        if not (dest / f).exists() or sha256_file(dest / f) != want:
            raise SystemExit(f"error: {card_dir / 'card.json'} was not measured on {dest / f} (sha256 differs); "
                             f"re-run: mimic prior-report {name} --write-card {card_dir}")
    old = json.loads((dest / "card.json").read_text()).get("sha256", {}) if (dest / "card.json").exists() else {}
    for f in CARD_FILES:
        if (card_dir / f).exists():
            tmp = dest / f".{f}.tmp"
            shutil.copyfile(card_dir / f, tmp)
            tmp.replace(dest / f)
    # the report's card lists the weights it measured; the checksums of the prior's other shipped files
    # (group_stats.json) stay, or load_prior would refuse them as unverified
    kept = {f: h for f, h in old.items() if f not in card["sha256"] and (dest / f).exists() and sha256_file(dest / f) == h}
    if kept:
        save_json(dest / "card.json", {**card, "sha256": {**card["sha256"], **kept}})
    print(f"shipped the model card of {name} from {card_dir} to {dest}")


def ship_group_stats(name: str, data=None) -> None:
    """Measure the training images' group statistics of a shipped prior and ship them (group_stats.json)."""
    from mimic.data import data_dir, list_images, load_fmnist, load_image_folder, split_files
    from mimic.groupstats import fit_group_stats

    dest = pretrained_dir() / name
    card = json.loads((dest / "card.json").read_text())
    if name.startswith("fmnist"):
        from mimic.data import fmnist_dir

        imgs, _ = load_fmnist(fmnist_dir(data), "train")
        source = f"Fashion-MNIST official training images ({len(imgs)})"
    else:
        files = split_files(list_images(data_dir("celeba", data)), holdout=card["split"]["holdout"]).train
        if len(files) != card["split"]["train"]["n"]:
            raise SystemExit(f"error: {len(files)} training images found, the card says {card['split']['train']['n']}")
        imgs = load_image_folder(files, size=64)
        source = f"the prior's {len(files)} training faces (the card's split), {card.get('preprocessing', '')}"
    gs = fit_group_stats(imgs, source=source)
    gs.save(dest / "group_stats.json")
    card.setdefault("sha256", {})["group_stats.json"] = sha256_file(dest / "group_stats.json")
    save_json(dest / "card.json", card)
    print(f"shipped group statistics of {name} ({gs.n_images} images) to {dest / 'group_stats.json'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt")
    ap.add_argument("--classifier", type=Path, help="a `mimic train classifier` output folder")
    ap.add_argument("--reconstructor", type=Path, help="a `mimic train reconstructor` run folder")
    ap.add_argument("--card", type=Path, help="a model card folder written by `mimic prior-report NAME --write-card DIR`")
    ap.add_argument("--name", required=True)
    ap.add_argument("--weights", default="auto", choices=["auto", "ema", "raw"])
    ap.add_argument("--group-stats", action="store_true", help="measure and ship the training images' statistics")
    ap.add_argument("--data", help="data root (default: MIMIC_DATA)")
    args = ap.parse_args()
    if args.group_stats:
        return ship_group_stats(args.name, args.data)
    if args.classifier:
        return ship_classifier(args.classifier, args.name)
    if args.reconstructor:
        return ship_reconstructor(args.reconstructor, args.name)
    if args.card:
        return ship_card(args.card, args.name)
    if not args.ckpt:
        ap.error("one of --ckpt, --card, --classifier is required")
    dest = pretrained_dir() / args.name
    st = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    choice, scores = args.weights, {}
    if choice == "auto":
        for w in ("raw", "ema"):
            scores[w] = checkpoint_val_projection(args.ckpt, use_ema=w == "ema")["psnr_mean"]
            print(f"{w}: validation projection PSNR {scores[w]:.2f} dB")
        choice = max(scores, key=scores.get)
    conf = export_prior(args.ckpt, dest, use_ema=choice == "ema")
    split = json.loads((Path(args.ckpt).parent / "split.json").read_text())
    hist = st["history"]
    card = {"name": args.name, **CARDS.get(args.name, {}),
            "split": {"holdout": st["config"]["holdout"], **split},
            "training": {"epochs": st["epoch"], "steps": st["global_step"], "seed": st["config"]["seed"],
                         "batch_size": st["config"]["batch_size"], "optimizer": "Adam lr 2e-4, betas (0.5, 0.999)",
                         "loss": "non-saturating GAN loss, z ~ U(-1,1)^100",
                         "train_seconds": st["elapsed"], "hardware": "2-core AMD EPYC CPU (shared), torch " + torch.__version__,
                         "generator_weights": choice, "weights_choice_validation_psnr": scores,
                         "last_epoch_losses": hist[-1] if hist else None},
            "sha256": {f: sha256_file(dest / f) for f in ("generator.safetensors", "discriminator.safetensors")}}
    save_json(dest / "card.json", card)
    print(f"shipped {args.name} ({choice} weights, {st['epoch']} epochs) to {dest}; now measure it and ship its card:\n"
          f"  mimic prior-report {args.name} --n 200 --write-card runs/card-{args.name}\n"
          f"  python -m tools.ship_prior --card runs/card-{args.name} --name {args.name}")


if __name__ == "__main__":
    main()
