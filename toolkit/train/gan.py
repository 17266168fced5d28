"""The `generate` task: a class-conditional GAN trained with alternating updates and judged by a classifier.

Quality is measured, not eyeballed. A classifier (the judge) trained on the same data labels generated
samples: `class_agreement` is the fraction it assigns to the class that was requested, and `diversity` is
the mean pairwise distance of samples within a class relative to the same spread in the real train images,
averaged over classes (1.0 = as varied as the data, near 0 = one image per class, i.e. mode collapse).
The judge is a `cnn-image` run trained into RUN_DIR/judge unless `model.judge` names an existing
classifier run; its own recorded normalization is applied to the generated pixels.

Public functions: `evaluate_gan` (behind `toolkit eval`) and `generate` (behind `toolkit generate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.errors import ToolkitError
from toolkit.train.optim import build_optimizer
from toolkit.train.registry import register_task
from toolkit.train.tasks import Task

VAL_NOISE_SEED = 10_007  # fixed noise for the per-epoch validation samples: epochs are compared fairly
TEST_NOISE_SEED = 20_011  # another fixed draw for the final metrics (and `toolkit eval`, which repeats them)
TEST_FACTOR = 5  # the final metrics use this many times model.samples_per_class per class
GRID_COLUMNS = 10  # samples per class in samples.png
MAX_REFERENCE = 1000  # real images per class used for the diversity reference
EMA_DECAY = 0.99  # per generator step: the sampled generator averages the trained one over ~100 steps
MODE_SEEKING = 0.1  # weight of the generator's mode-seeking term (0 = plain DCGAN, which collapses per class)


# --------------------------------------------------------------------------------------------- sampling
def noise(count: int, latent: int, seed: int) -> torch.Tensor:
    """(count, latent) standard normal noise from its own generator (the global RNG is left alone)."""
    return torch.randn(count, latent, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample(
    model: nn.Module, labels: torch.Tensor, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Generated images for `labels` (B,) in the generator's [-1, 1] scale, (B, C, H, W) on the CPU."""
    model.eval()
    z = noise(len(labels), model.latent, seed)
    parts = [
        model(z[i : i + 1024].to(device), labels[i : i + 1024].to(device)).float().cpu()
        for i in range(0, len(labels), 1024)
    ]
    return torch.cat(parts)


def class_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """[0]*per_class + [1]*per_class + ...: every class equally often, grouped (rows of the grid)."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """Generator scale [-1, 1] -> pixels in [0, 1] (the data's mean 0.5 / std 0.5 undone)."""
    return ((images + 1) / 2).clamp(0, 1)


# --------------------------------------------------------------------------------------------- judge
@dataclass
class Judge:
    """A trained classifier and the preprocessing its run recorded (its own mean/std)."""

    model: nn.Module
    mean: torch.Tensor
    std: torch.Tensor
    flatten: bool  # an MLP judge reads flattened pixels
    path: Path

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> np.ndarray:
        """Class indices for images in [0, 1], (B, C, H, W) -> (B,)."""
        device = next(self.model.parameters()).device
        x = pixels.reshape(len(pixels), -1) if self.flatten else pixels
        x = ((x.to(device) - self.mean) / self.std).float()
        out = [self.model(x[i : i + 1024]).argmax(1).cpu() for i in range(0, len(x), 1024)]
        return torch.cat(out).numpy()


def load_judge(
    path: str | Path, labels: list[str], shape: tuple[int, ...], device: torch.device | str = "cpu"
) -> Judge:
    """Load a classifier run as judge; it must classify the data's classes at the data's image shape."""
    from toolkit.train.checkpoint import load_checkpoint, load_model

    path = Path(path)
    if not (path / "best.pt").is_file():
        raise ToolkitError(f"judge {path}: no best.pt there; model.judge must be a classifier run directory")
    ckpt = load_checkpoint(path / "best.pt")
    task = ckpt["recipe"]["task"]
    if task != "classify":
        raise ToolkitError(
            f"judge {path} is a {task} run; model.judge must be a classifier run (task classify)"
        )
    spec = ckpt["spec"]
    if spec.get("labels") != list(labels):
        raise ToolkitError(
            f"judge {path} classifies {', '.join(spec.get('labels') or [])}; the data's classes are "
            f"{', '.join(labels)}"
        )
    image = spec.get("image", {})
    judge_shape = (image.get("channels"), image.get("height"), image.get("width"))
    if judge_shape != tuple(shape):
        theirs, ours = "x".join(map(str, judge_shape)), "x".join(map(str, shape))
        raise ToolkitError(f"judge {path} takes {theirs} images; the data's are {ours} (CxHxW)")
    flatten = spec["kind"] != "image"
    mean = torch.as_tensor(spec["mean"], dtype=torch.float32)
    std = torch.as_tensor(spec["std"], dtype=torch.float32)
    if not flatten:
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return Judge(load_model(ckpt).to(device), mean.to(device), std.to(device), flatten, path)


def train_judge(recipe: Any, out: Path) -> Path:
    """Train a cnn-image classifier on the GAN recipe's data (same seed, split and image size) into `out`;
    an interrupted judge is resumed and a finished one reused, so `toolkit train --resume` works."""
    from toolkit.train.run import train

    if (out / "metrics.json").is_file():
        return out
    if (out / "last.pt").is_file():
        train(resume=out, progress=None)
        return out
    d, t = recipe.data, recipe.train

    overrides = [
        f"train.seed={t.seed}",
        f"train.device={t.device}",
        f"data.val_fraction={d.val_fraction}",
        f"data.test_fraction={d.test_fraction}",
        f"data.image_size={'null' if d.image_size is None else d.image_size}",
        f"data.channels={'null' if d.channels is None else d.channels}",
    ]
    train("cnn", data=d.source, overrides=overrides, out=out, progress=None)
    return out


# --------------------------------------------------------------------------------------------- metrics
def spreads(pixels: torch.Tensor, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """Per class: the mean pairwise L2 distance between its images in [0, 1] (None under 2 images)."""
    flat = pixels.reshape(len(pixels), -1).double()
    out: list[float | None] = []
    for c in range(num_classes):
        x = flat[torch.as_tensor(labels == c)][:MAX_REFERENCE]
        n = len(x)
        out.append(float(torch.cdist(x, x).sum() / (n * (n - 1))) if n >= 2 else None)
    return out


def sample_metrics(
    model: nn.Module,
    judge: Judge,
    real_spread: list[float | None],
    per_class: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """class_agreement and diversity of `per_class` samples of every class (fixed noise `seed`), plus the
    agreement of each class (for reports)."""
    k = len(real_spread)
    labels = class_labels(k, per_class)
    pixels = to_pixels(sample(model, labels, seed, device))
    predicted = judge.predict(pixels)
    wanted = labels.numpy()
    agree = predicted == wanted
    ratios = [
        g / r
        for g, r in zip(spreads(pixels, wanted, k), real_spread)
        if g is not None and r is not None and r > 0
    ]
    return {
        "class_agreement": float(agree.mean()),
        "diversity": float(np.mean(ratios)) if ratios else float("nan"),
        "per_class_agreement": [float(agree[wanted == c].mean()) for c in range(k)],
    }


# --------------------------------------------------------------------------------------------- task
@register_task
class GenerateTask(Task):
    """Alternating discriminator/generator updates; validation scores samples with the judge."""

    name = "generate"
    target_dtype = torch.int64
    custom_epoch = True

    def prepare(self, splits: Any, device: torch.device) -> None:
        if len(splits.x_val) == 0:
            raise ToolkitError(
                "the GAN picks its best epoch on validation samples; set data.val_fraction > 0"
            )
        cfg = self.recipe.model
        if cfg.judge is None:
            judge_dir = train_judge(self.recipe, Path(self.run_dir) / "judge")
            self.spec["judge"] = "judge"  # relative: the run directory can be moved
        else:
            judge_dir = Path(cfg.judge).resolve()
            self.spec["judge"] = str(judge_dir)
        self.judge = load_judge(judge_dir, self.spec["labels"], splits.input_shape, device)
        # The diversity reference: how far apart real train images of each class are, recorded in the spec
        # so `toolkit eval` scores a run without re-reading its data.
        real = to_pixels(torch.as_tensor(splits.x_train))
        self.spec["real_spread"] = spreads(real, splits.y_train, len(self.spec["labels"]))
        self.device = device

    def optimizers(self, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
        opts = {}
        for name in ("generator", "discriminator"):  # the generator's first: its lr is the row's `lr`
            opt = build_optimizer(self.recipe, getattr(model, name).parameters())
            if isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
                for group in opt.param_groups:  # DCGAN practice: a short momentum memory (beta1 0.5)
                    group["betas"] = (self.recipe.model.beta1, 0.999)
            opts[name] = opt
        return opts

    def train_epoch(
        self,
        model: nn.Module,
        batches: Any,
        optimizers: dict[str, torch.optim.Optimizer],
        on_batch: Any = None,
        token_p: float = 0.0,
    ) -> dict[str, float]:
        """One pass over the real images: per batch, model.d_steps discriminator updates (the batch's real
        images with one-sided smoothed targets vs. fresh detached fakes of the same classes), then one
        non-saturating generator update and an update of the averaged generator."""
        cfg, clip = self.recipe.model, self.recipe.train.grad_clip
        g, d = model.generator, model.discriminator
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        model.train()
        real_target = 1.0 - cfg.label_smoothing
        sums = torch.zeros(2, device=batches.x.device)
        count = 0
        for x, y in batches:  # (B, C, H, W) in [-1, 1], (B,) class indices
            b = len(x)
            if b < 2:  # a last batch of one image: batch norm needs two
                continue
            for _ in range(cfg.d_steps):
                with torch.no_grad():
                    fake = g(torch.randn(b, cfg.latent, device=x.device), y)
                real_logits, fake_logits = d(x, y), d(fake, y)
                loss_d = F.binary_cross_entropy_with_logits(
                    real_logits, torch.full_like(real_logits, real_target)
                ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                if clip > 0:
                    nn.utils.clip_grad_norm_(d.parameters(), clip)
                opt_d.step()
            # Generator: fresh noise, random classes, and the targets "real" (non-saturating loss). The batch
            # is two halves with the same classes and different noise: the mode-seeking term (Mao et al.
            # 2019) rewards images that differ when the noise differs, against per-class mode collapse.
            h = b // 2
            half = torch.randint(0, model.num_classes, (h,), device=x.device)
            labels = torch.cat([half, half, half[: b - 2 * h]])
            z = torch.randn(b, cfg.latent, device=x.device)
            fake = g(z, labels)
            fake_logits = d(fake, labels)
            loss_g = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
            if MODE_SEEKING > 0 and h > 0:
                spread = (fake[:h] - fake[h : 2 * h]).abs().mean() / (z[:h] - z[h : 2 * h]).abs().mean()
                loss_g = loss_g + MODE_SEEKING / (spread + 1e-5)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(g.parameters(), clip)
            opt_g.step()
            model.update_average(EMA_DECAY)
            sums += torch.stack([loss_d.detach(), loss_g.detach()]) * b  # no sync per batch
            count += b
            if on_batch is not None:
                on_batch(1.0)
        loss_d_mean, loss_g_mean = (sums / max(count, 1)).tolist()
        return {"loss_d": loss_d_mean, "loss_g": loss_g_mean}

    def evaluate(self, model: nn.Module, x: torch.Tensor, y_np: np.ndarray) -> dict[str, float]:
        """Validation: judge `samples_per_class` samples per class drawn from fixed noise."""
        m = sample_metrics(
            model,
            self.judge,
            self.spec["real_spread"],
            self.recipe.model.samples_per_class,
            VAL_NOISE_SEED,
            self.device,
        )
        return {"class_agreement": m["class_agreement"], "diversity": m["diversity"]}

    def final_metrics(self, model: nn.Module, val: tuple, test: tuple) -> tuple[dict[str, float], dict]:
        return reported_metrics(model, self.judge, self.spec, self.recipe.model, self.device), {}

    def evaluate_run(
        self, run_dir: Path, ckpt: dict[str, Any], data: str | None, plots: bool
    ) -> dict[str, Any]:
        """No test split to score: the GAN is judged on what it generates (evaluate_gan)."""
        return evaluate_gan(run_dir, ckpt, plots=plots)


def reported_metrics(
    model: nn.Module, judge: Judge, spec: dict[str, Any], cfg: Any, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The run's reported metrics: TEST_FACTOR x samples_per_class samples per class from fixed noise."""
    m = sample_metrics(
        model, judge, spec["real_spread"], TEST_FACTOR * cfg.samples_per_class, TEST_NOISE_SEED, device
    )
    return {"class_agreement": m["class_agreement"], "diversity": m["diversity"]}


# --------------------------------------------------------------------------------------------- public API
def load_gan(
    run_dir: str | Path, ckpt: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any], Any]:
    """(model, spec, recipe) of a GAN run from its best.pt; a one-line error for any other run."""
    from toolkit.recipe import recipe_from_dict
    from toolkit.train.checkpoint import load_checkpoint, load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ToolkitError(f"run directory not found: {run_dir}")
    ckpt = ckpt if ckpt is not None else load_checkpoint(run_dir / "best.pt")
    rec = recipe_from_dict(ckpt["recipe"])
    if rec.task != "generate":
        raise ToolkitError(
            f"{run_dir} is a {rec.task} run ({rec.name}), not a GAN run; train one with `toolkit train gan`"
        )
    return load_model(ckpt), ckpt["spec"], rec


def resolve_label(label: str | int, labels: list[str]) -> int:
    """A class name from the data, or its index."""
    text = str(label).strip()
    if text in labels:
        return labels.index(text)
    if text.isdigit() and int(text) < len(labels):
        return int(text)
    shown = ", ".join(labels[:30]) + (", ..." if len(labels) > 30 else "")
    raise ToolkitError(
        f"label {text!r} is not in the data; allowed: {shown} (or an index 0-{len(labels) - 1})"
    )


def generate(run_dir: str | Path, label: str | int, count: int, seed: int = 0) -> np.ndarray:
    """`count` images of class `label` (name or index) from a GAN run, (count, C, H, W) float32 in [0, 1].
    The same seed gives the same images."""
    if count < 1:
        raise ToolkitError(f"count must be a positive integer (got {count})")
    model, spec, _ = load_gan(run_dir)
    index = resolve_label(label, spec["labels"])
    labels = torch.full((count,), index, dtype=torch.int64)
    return to_pixels(sample(model, labels, seed)).numpy()


def evaluate_gan(
    run_dir: str | Path, ckpt: dict[str, Any] | None = None, plots: bool = True
) -> dict[str, Any]:
    """Re-score a GAN run with its judge on the samples behind its metrics.json (same noise, same numbers)
    and write samples.png: one row of samples per class."""
    run_dir = Path(run_dir)
    model, spec, rec = load_gan(run_dir, ckpt)
    judge_dir = run_dir / spec["judge"]  # relative to the run, or an absolute path
    shape = (spec["image"]["channels"], spec["image"]["height"], spec["image"]["width"])
    judge = load_judge(judge_dir, spec["labels"], shape)
    k, n = len(spec["labels"]), TEST_FACTOR * rec.model.samples_per_class
    m = sample_metrics(model, judge, spec["real_spread"], n, TEST_NOISE_SEED)
    result: dict[str, Any] = {
        "source": "generated samples",
        "judge": str(judge_dir),
        "samples": k * n,
        "metrics": {"class_agreement": m["class_agreement"], "diversity": m["diversity"]},
        "labels": spec["labels"],
        "per_class_agreement": dict(zip(spec["labels"], m["per_class_agreement"])),
    }
    if plots:
        from toolkit.train.plots import plot_samples

        grid = to_pixels(sample(model, class_labels(k, GRID_COLUMNS), TEST_NOISE_SEED)).numpy()
        plot_samples(grid, spec["labels"], run_dir / "samples.png")
        result["plot"] = str(run_dir / "samples.png")
    return result
