"""Reproduce the paper's end-to-end baseline: the Hamiltonian-embedding classifier, with its authors' protocol.

The protocol of arXiv:2407.14055's notebooks (``qcreep.endtoend.PUBLISHED_PROTOCOL``): labels 0-7 of
the official MNIST or FashionMNIST split, batch 1000 (reshuffled every epoch), 100 epochs, every
gradient entry clipped to [-1, 1], then Adam at 0.01 times 0.99**(step / 100), softmax
cross-entropy on the measured probabilities, parameters standard normal, float64. Published final
test accuracies: MNIST (L = 10) 89.72 +/- 0.98 %, FashionMNIST (L = 20) 79.62 +/- 0.18 %.

Every image's spectrum ``A = V diag(lambda) V^T`` is computed once (the images do not change), so an
epoch is the circuit alone. The script writes one JSON per seed (per-epoch loss, train accuracy of
the batches, seconds; test accuracy every ``--eval-every`` epochs and at the end) and a summary.

    python benchmarks/reproduce_hamembedding.py --dataset mnist --seeds 0 1 --data-dir ../shared/data \
        --out benchmarks/results/hamembedding-mnist
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from qcreep.data import load_dataset
from qcreep.endtoend import PUBLISHED_PROTOCOL, HamEmbeddingClassifier


def subset(split, classes):
    keep = torch.isin(split.y, torch.tensor(classes))
    return split.x[keep], split.y[keep]


def spectra(model, x, chunk=4000):
    lams, vecs = [], []
    for start in range(0, x.shape[0], chunk):
        lam, vec = model.spectrum(x[start:start + chunk].to(model.theta.dtype))
        lams.append(lam)
        vecs.append(vec)
    return torch.cat(lams), torch.cat(vecs)


def accuracy(model, lam, vecs, y, chunk=2000):
    right = 0
    with torch.no_grad():
        for start in range(0, y.shape[0], chunk):
            logits = model.logits_from_spectrum(lam[start:start + chunk], vecs[start:start + chunk])
            right += int((logits.argmax(-1) == y[start:start + chunk]).sum())
    return 100.0 * right / y.shape[0]


def run_seed(args, seed, data, out: Path):
    (lam_tr, vec_tr, y_tr), (lam_te, vec_te, y_te) = data
    proto = PUBLISHED_PROTOCOL
    torch.manual_seed(seed)
    model = HamEmbeddingClassifier((1, 32, 32), len(proto["classes"]), layers=args.layers, readout=args.readout,
                                   dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=proto["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: proto["lr_decay"] ** (step / proto["lr_decay_steps"]))
    gen = torch.Generator().manual_seed(seed)
    record = {"seed": seed, "dataset": args.dataset, "layers": args.layers, "readout": args.readout,
              "parameters": model.num_parameters, "n_train": int(y_tr.shape[0]), "n_test": int(y_te.shape[0]),
              "epochs": [], "test_accs": {}}
    n = y_tr.shape[0]
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        losses, right = [], 0
        for first in range(0, n, proto["batch_size"]):
            idx = order[first:first + proto["batch_size"]]
            logits = model.logits_from_spectrum(lam_tr[idx], vec_tr[idx])
            loss = torch.nn.functional.cross_entropy(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p in model.parameters():
                p.grad.clamp_(-proto["clip_value"], proto["clip_value"])
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            right += int((logits.detach().argmax(-1) == y_tr[idx]).sum())
        seconds = time.perf_counter() - start
        entry = {"epoch": epoch, "loss": statistics.fmean(losses), "train_acc": 100.0 * right / n, "seconds": seconds}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            record["test_accs"][str(epoch)] = accuracy(model, lam_te, vec_te, y_te)
            entry["test_acc"] = record["test_accs"][str(epoch)]
        record["epochs"].append(entry)
        print(f"seed {seed} epoch {epoch}/{args.epochs}: loss {entry['loss']:.4f} train {entry['train_acc']:.2f}%"
              + (f" test {entry['test_acc']:.2f}%" if "test_acc" in entry else "") + f" ({seconds:.1f} s)",
              flush=True)
    record["final_test_acc"] = record["test_accs"][str(args.epochs)]
    record["seconds_per_epoch"] = statistics.fmean(e["seconds"] for e in record["epochs"])
    record["unitarity_error"] = model.physicality()["unitarity_error"]
    (out / f"seed{seed}.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], required=True)
    parser.add_argument("--layers", type=int, default=None, help="L (default: 10 for MNIST, 20 for FashionMNIST)")
    parser.add_argument("--readout", default="published", choices=["published", "first_qubits"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=PUBLISHED_PROTOCOL["epochs"])
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.layers = args.layers or PUBLISHED_PROTOCOL["layers"][args.dataset]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train, test = load_dataset(args.dataset, args.data_dir, download=False)
    classes = list(PUBLISHED_PROTOCOL["classes"])
    probe = HamEmbeddingClassifier((1, 32, 32), len(classes), layers=1, dtype=torch.float64)
    data = []
    for split in (train, test):
        x, y = subset(split, classes)
        lam, vecs = spectra(probe, x)
        data.append((lam, vecs, y))
    prep = time.perf_counter() - started
    print(f"{args.dataset}: {data[0][2].shape[0]} train and {data[1][2].shape[0]} test images of classes 0-7; "
          f"spectra in {prep:.1f} s", flush=True)
    records = [run_seed(args, seed, data, out) for seed in args.seeds]
    finals = [r["final_test_acc"] for r in records]
    published = PUBLISHED_PROTOCOL["published_accuracy"][args.dataset]
    summary = {
        "dataset": args.dataset, "layers": args.layers, "readout": args.readout, "seeds": args.seeds,
        "epochs": args.epochs, "final_test_accs": finals, "mean": statistics.fmean(finals),
        "std": statistics.stdev(finals) if len(finals) > 1 else math.nan,
        "published": {"mean": published[0], "std": published[1]},
        "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in records),
        "spectra_seconds": prep, "threads": args.threads, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"final test accuracy {summary['mean']:.2f} +/- {summary['std']:.2f} % over seeds {args.seeds} "
          f"(published {published[0]} +/- {published[1]} %); {summary['seconds_per_epoch']:.1f} s per epoch")


if __name__ == "__main__":
    main()
