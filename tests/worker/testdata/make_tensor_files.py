# Writes the "tensors" dataset files tensor_file_test.cc reads, good and bad, into the folder
# given as the only argument. Needs a Python with torch (Debian 12: python3-torch).
import collections
import os
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def save(name, obj):
    torch.save(obj, os.path.join(out, name + ".pt"))


def good_u8():
    # 6 train and 3 test examples of 4 x 5 single-channel uint8 images; pixel = 10 * i + j.
    train_x = torch.zeros(6, 4, 5, dtype=torch.uint8)
    for n in range(6):
        for i in range(4):
            for j in range(5):
                train_x[n, i, j] = (10 * i + j + n) % 256
    test_x = torch.full((3, 4, 5), 255, dtype=torch.uint8)
    return {
        "train_x": train_x,
        "train_y": torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int64),
        "test_x": test_x,
        "test_y": torch.tensor([2, 3, 0], dtype=torch.int64),
    }


save("u8_nhw", good_u8())
save("u8_mean_std", dict(good_u8(), mean=0.5, std=torch.tensor([0.25])))

# float32 N x C x H x W with int32 labels, an explicit num_classes and per-channel statistics.
g = torch.Generator().manual_seed(3)
f32 = {
    "train_x": torch.randn(5, 3, 2, 2, generator=g),
    "train_y": torch.tensor([0, 1, 2, 3, 4], dtype=torch.int32),
    "test_x": torch.randn(2, 3, 2, 2, generator=g),
    "test_y": torch.tensor([4, 0], dtype=torch.int32),
    "num_classes": 7,
    "mean": [0.1, 0.2, 0.3],
    "std": [1.0, 2.0, 4.0],
}
save("f32_nchw", f32)
torch.save(f32["train_x"], os.path.join(out, "f32_train_x.pt"))  # to compare against

# Bad files: one fault each.
bad = good_u8()
del bad["test_y"]
save("missing_test_y", bad)
save("unknown_key", dict(good_u8(), train_labels=torch.zeros(6, dtype=torch.int64)))
save("x_float64", dict(good_u8(), train_x=torch.zeros(6, 4, 5, dtype=torch.float64)))
save("x_2d", dict(good_u8(), train_x=torch.zeros(6, 20, dtype=torch.uint8)))
save("y_float", dict(good_u8(), train_y=torch.zeros(6)))
save("y_wrong_length", dict(good_u8(), train_y=torch.zeros(5, dtype=torch.int64)))
save("y_negative", dict(good_u8(), test_y=torch.tensor([0, -1, 2])))
save("y_too_big", dict(good_u8(), num_classes=3))
save("num_classes_1", dict(good_u8(), num_classes=1))
save("test_x_other_shape", dict(good_u8(), test_x=torch.zeros(3, 4, 4, dtype=torch.uint8)))
save("x_nan", dict(good_u8(), test_x=torch.full((3, 4, 5), float("nan"))))
save("x_not_tensor", dict(good_u8(), train_x=[1, 2, 3]))
save("mean_without_std", dict(good_u8(), mean=0.5))
save("std_zero", dict(good_u8(), mean=0.5, std=torch.tensor([0.0])))
save("mean_two_entries", dict(good_u8(), mean=[0.5, 0.5], std=[1.0, 1.0]))
save("ordered_dict", collections.OrderedDict(good_u8()))
save("a_list", [torch.zeros(2), torch.zeros(2)])
with open(os.path.join(out, "not_torch.pt"), "w") as f:
    f.write("train_x,train_y\n1,2\n")
