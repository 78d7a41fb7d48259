# qsr-run trains on a dataset written by torch.save: a Fashion-MNIST subset (Debian's
# dataset-fashion-mnist) saved as {"train_x", "train_y", "test_x", "test_y", "mean", "std"} with
# uint8 images, trained by 2 workers with Local SGD + QSR; the test accuracy must be far above
# chance (10 classes: 0.1).
#
# usage: python3 tensors_dataset_test.py BIN_DIR WORK_DIR
import gzip
import json
import os
import subprocess
import sys

import torch

FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(name, offset):
    with gzip.open(os.path.join(FMNIST, name), "rb") as f:
        data = f.read()
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8)


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    train_x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:3000].clone()
    train_y = idx("train-labels-idx1-ubyte.gz", 8)[:3000].to(torch.int64)
    test_x = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:1000].clone()
    test_y = idx("t10k-labels-idx1-ubyte.gz", 8)[:1000].to(torch.int64)
    data = os.path.join(work, "fmnist-subset.pt")
    torch.save({"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                "mean": 0.2860, "std": 0.3530}, data)

    recipe = os.path.join(work, "recipe.yaml")
    with open(recipe, "w") as f:
        f.write("\n".join([
            "model: cnn", "dataset: tensors", f"data_dir: {data}", "optimizer: localsgd",
            "workers: 2", "total_batch_size: 64", "steps_per_epoch: 46", "epochs: 2",
            "max_lr: 0.05", "min_lr: 0.0", "momentum: 0.9", "scheduler: cosine",
            "warmup_epochs: 0.2", "alpha: 0.1", "min_h: 2", "init_h: 2", "seed: 1", ""]))
    run_dir = os.path.join(work, "run")
    # qsr-run's own deadlines end a stuck run; the timeout here only guards against a hang.
    proc = subprocess.run([os.path.join(bin_dir, "qsr-run"), "--workers", "2", "--recipe", recipe,
                           "--run-dir", run_dir, "--threads", "1", "--progress", "30s"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=400)
    print(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"qsr-run exited with {proc.returncode}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    acc = summary["test_acc"]
    print(f"test accuracy {acc:.4f} on {test_y.numel()} test examples")
    if summary["state"] != "FINISHED" or not acc > 0.6:
        sys.exit(f"want a finished run with test accuracy > 0.6 (chance 0.1), got {summary}")


if __name__ == "__main__":
    main()
