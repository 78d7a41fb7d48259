#include "worker/data/tensor_file.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qsr {
namespace {

constexpr const char* kRequired[] = {"train_x", "train_y", "test_x", "test_y"};
constexpr const char* kOptional[] = {"num_classes", "mean", "std"};

std::string ShapeText(const at::Tensor& t) {
  std::vector<std::string> dims;
  for (int64_t d : t.sizes()) dims.push_back(absl::StrCat(d));
  return dims.empty() ? "a scalar" : absl::StrJoin(dims, " x ");
}

// The dtype as Python spells it (torch.float64, not LibTorch's "Double").
std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kByte:
      return "uint8";
    case at::kChar:
      return "int8";
    case at::kShort:
      return "int16";
    case at::kInt:
      return "int32";
    case at::kLong:
      return "int64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kBool:
      return "bool";
    default:
      return c10::toString(t);
  }
}

// Errors of one file: "tensors file F, key "k": ...".
class FileErrors {
 public:
  explicit FileErrors(std::string path) : path_(std::move(path)) {}
  absl::Status Key(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("tensors file ", path_, ", key \"", key, "\": ", what));
  }
  absl::Status File(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("tensors file ", path_, ": ", what));
  }

 private:
  std::string path_;
};

// x of one split as float32 N x C x H x W, in [0, 1] for uint8.
absl::StatusOr<at::Tensor> Images(const at::Tensor& x, const std::string& key,
                                  const FileErrors& err) {
  if (x.scalar_type() != at::kByte && x.scalar_type() != at::kFloat) {
    return err.Key(key, absl::StrCat("dtype ", DtypeName(x.scalar_type()),
                                     " is not allowed; use uint8 (pixels 0..255, scaled to [0, 1]) "
                                     "or float32"));
  }
  if (x.dim() != 3 && x.dim() != 4) {
    return err.Key(key, absl::StrCat("shape ", ShapeText(x),
                                     " is not allowed; use N x C x H x W, or N x H x W for one "
                                     "channel"));
  }
  if (x.size(0) < 1 || x.numel() == 0) {
    return err.Key(key, absl::StrCat("shape ", ShapeText(x), " holds no examples"));
  }
  at::Tensor images = x.dim() == 3 ? x.unsqueeze(1) : x;
  if (images.scalar_type() == at::kByte) {
    images = images.to(at::kFloat).div_(255.0f);
  } else {
    if (!at::isfinite(images).all().item<bool>()) {
      return err.Key(key, "holds NaN or infinite values");
    }
  }
  return images.contiguous();
}

// y of one split as int64 N.
absl::StatusOr<at::Tensor> Labels(const at::Tensor& y, int64_t n, const std::string& key,
                                  const FileErrors& err) {
  if (y.scalar_type() != at::kLong && y.scalar_type() != at::kInt) {
    return err.Key(key, absl::StrCat("dtype ", DtypeName(y.scalar_type()),
                                     " is not allowed; use int64 (or int32) class indices"));
  }
  if (y.dim() != 1 || y.size(0) != n) {
    return err.Key(key, absl::StrCat("shape ", ShapeText(y), " is not allowed; want ", n,
                                     " (one label per example of the matching _x)"));
  }
  return y.to(at::kLong).contiguous();
}

// A statistic with 1 or `channels` entries, as `channels` floats.
absl::StatusOr<std::vector<float>> Statistic(const c10::IValue& v, int64_t channels,
                                             const std::string& key, const FileErrors& err) {
  std::vector<double> values;
  if (v.isDouble()) {
    values.push_back(v.toDouble());
  } else if (v.isInt()) {
    values.push_back(static_cast<double>(v.toInt()));
  } else if (v.isTensor()) {
    const at::Tensor t = v.toTensor();
    if (!at::isFloatingType(t.scalar_type()) || t.dim() > 1) {
      return err.Key(key, absl::StrCat("a ", DtypeName(t.scalar_type()), " tensor of shape ",
                                       ShapeText(t), " is not allowed; use a 1-d float tensor"));
    }
    const at::Tensor d = t.to(at::kDouble).reshape({-1}).contiguous();
    values.assign(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toListRef()) {
      if (e.isDouble()) {
        values.push_back(e.toDouble());
      } else if (e.isInt()) {
        values.push_back(static_cast<double>(e.toInt()));
      } else {
        return err.Key(key, "a list holding a non-number is not allowed; use a list of numbers");
      }
    }
  } else {
    return err.Key(key, absl::StrCat("a ", v.tagKind(),
                                     " is not allowed; use a number, a list of numbers or a 1-d "
                                     "float tensor"));
  }
  if (values.size() != 1 && static_cast<int64_t>(values.size()) != channels) {
    return err.Key(key, absl::StrCat(values.size(), " entries are not allowed; want ",
                                     channels == 1 ? "1" : absl::StrCat("1 or ", channels),
                                     " (the images have ", channels, " channel",
                                     channels == 1 ? "" : "s", ")"));
  }
  std::vector<float> out;
  for (double x : values) {
    if (!std::isfinite(x) || (key == "std" && x <= 0)) {
      return err.Key(key, absl::StrCat("value ", x, " is not allowed; want ",
                                       key == "std" ? "a finite number > 0" : "a finite number"));
    }
    out.push_back(static_cast<float>(x));
  }
  if (out.size() == 1) out.assign(channels, out[0]);
  return out;
}

// The file's dict, by key: every key known, the required ones tensors.
absl::StatusOr<std::map<std::string, c10::IValue>> ReadEntries(const std::string& path,
                                                               const FileErrors& err) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return err.File("cannot be read");
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    // pickle_load asserts on the None that an OrderedDict became.
    if (std::string(e.what()).find("but got None") == std::string::npos) {
      std::string what = e.what();
      if (const size_t cut = what.find("\nException raised from"); cut != std::string::npos) {
        what.resize(cut);
      }
      // LibTorch 1.13's unpickler lacks APPEND, which Python uses for a one-element list.
      const char* hint = absl::StrContains(what, "Unknown opcode for unpickling at 0x61")
                             ? "; a list of one number cannot be read: give a number or a tensor"
                             : "";
      return err.File(absl::StrCat("not a file written by torch.save (", what, ")", hint));
    }
    value = c10::IValue();
  }
  if (value.isNone()) {
    return err.File(
        "holds None or an OrderedDict, which LibTorch cannot unpickle; save a plain dict");
  }
  if (!value.isGenericDict()) {
    return err.File(absl::StrCat("holds a ", value.tagKind(), ", not a dict with keys ",
                                 absl::StrJoin(TensorFileKeys(), ", ")));
  }
  std::map<std::string, c10::IValue> entries;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString()) {
      return err.File(absl::StrCat(
          "a key of type ", entry.key().tagKind(),
          " is not allowed; keys are strings: ", absl::StrJoin(TensorFileKeys(), ", ")));
    }
    const std::string key = entry.key().toStringRef();
    const std::vector<std::string> known = TensorFileKeys();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return err.Key(key, absl::StrCat("unknown key; allowed: ", absl::StrJoin(known, ", ")));
    }
    entries.emplace(key, entry.value());
  }
  for (const char* key : kRequired) {
    auto it = entries.find(key);
    if (it == entries.end()) {
      return err.Key(key, absl::StrCat("missing; the dict needs ", absl::StrJoin(kRequired, ", "),
                                       " (optional: ", absl::StrJoin(kOptional, ", "), ")"));
    }
    if (!it->second.isTensor()) {
      return err.Key(
          key, absl::StrCat("a ", it->second.tagKind(), " is not allowed; it must be a tensor"));
    }
  }
  return entries;
}

// num_classes as given (an int >= 2 above every label), or max label + 1 (at least 2); labels >= 0.
absl::StatusOr<int64_t> NumClasses(const std::map<std::string, c10::IValue>& entries,
                                   const at::Tensor& train_y, const at::Tensor& test_y,
                                   const FileErrors& err) {
  int64_t num_classes = 0;
  if (auto it = entries.find("num_classes"); it != entries.end()) {
    const c10::IValue& v = it->second;
    if (v.isInt()) {
      num_classes = v.toInt();
    } else if (v.isTensor() && v.toTensor().numel() == 1 &&
               !at::isFloatingType(v.toTensor().scalar_type())) {
      num_classes = v.toTensor().item<int64_t>();
    } else {
      return err.Key("num_classes",
                     absl::StrCat("a ", v.tagKind(), " is not allowed; use an int >= 2"));
    }
    if (num_classes < 2) {
      return err.Key("num_classes",
                     absl::StrCat("value ", num_classes, " is not allowed; use an int >= 2"));
    }
  }
  for (const auto& [key, y] : {std::pair<const char*, at::Tensor>{"train_y", train_y},
                               std::pair<const char*, at::Tensor>{"test_y", test_y}}) {
    const int64_t lo = y.min().item<int64_t>();
    const int64_t hi = y.max().item<int64_t>();
    if (lo < 0) {
      return err.Key(key, absl::StrCat("label ", lo, " is not allowed; labels are >= 0"));
    }
    if (entries.count("num_classes") != 0 && hi >= num_classes) {
      return err.Key(key, absl::StrCat("label ", hi, " is not allowed; labels are < num_classes (",
                                       num_classes, ")"));
    }
  }
  if (entries.count("num_classes") == 0) {
    num_classes = std::max<int64_t>(
        2, std::max(train_y.max().item<int64_t>(), test_y.max().item<int64_t>()) + 1);
  }
  return num_classes;
}

absl::StatusOr<Dataset> Load(const std::string& path, bool train) {
  const FileErrors err(path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "tensors file ", path,
        " does not exist or is not a file (data_dir, the worker's --data-dir or QSR_DATA_DIR "
        "name the file written by torch.save)"));
  }
  absl::StatusOr<std::map<std::string, c10::IValue>> read = ReadEntries(path, err);
  if (!read.ok()) return read.status();
  std::map<std::string, c10::IValue>& entries = *read;
  try {
    absl::StatusOr<at::Tensor> train_x = Images(entries["train_x"].toTensor(), "train_x", err);
    if (!train_x.ok()) return train_x.status();
    absl::StatusOr<at::Tensor> test_x = Images(entries["test_x"].toTensor(), "test_x", err);
    if (!test_x.ok()) return test_x.status();
    if (train_x->sizes().slice(1) != test_x->sizes().slice(1)) {
      return err.Key("test_x", absl::StrCat("examples of ", ShapeText((*test_x)[0]),
                                            " differ from train_x's ", ShapeText((*train_x)[0]),
                                            "; both splits need the same C x H x W"));
    }
    absl::StatusOr<at::Tensor> train_y =
        Labels(entries["train_y"].toTensor(), train_x->size(0), "train_y", err);
    if (!train_y.ok()) return train_y.status();
    absl::StatusOr<at::Tensor> test_y =
        Labels(entries["test_y"].toTensor(), test_x->size(0), "test_y", err);
    if (!test_y.ok()) return test_y.status();

    absl::StatusOr<int64_t> num_classes = NumClasses(entries, *train_y, *test_y, err);
    if (!num_classes.ok()) return num_classes.status();

    const bool has_mean = entries.count("mean") != 0, has_std = entries.count("std") != 0;
    if (has_mean != has_std) {
      return err.Key(has_mean ? "std" : "mean",
                     absl::StrCat("missing; \"", has_mean ? "mean" : "std",
                                  "\" is given, and normalising needs both or neither"));
    }
    const int64_t channels = train_x->size(1);
    Dataset data;
    data.images = train ? *train_x : *test_x;
    data.labels = train ? *train_y : *test_y;
    data.num_classes = *num_classes;
    if (has_mean) {
      absl::StatusOr<std::vector<float>> mean = Statistic(entries["mean"], channels, "mean", err);
      if (!mean.ok()) return mean.status();
      absl::StatusOr<std::vector<float>> std = Statistic(entries["std"], channels, "std", err);
      if (!std.ok()) return std.status();
      const at::Tensor m = at::tensor(*mean).view({1, channels, 1, 1});
      const at::Tensor s = at::tensor(*std).view({1, channels, 1, 1});
      data.images.sub_(m).div_(s);
      for (int64_t c = 0; c < channels; ++c) data.black.push_back(-(*mean)[c] / (*std)[c]);
    }
    return data;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("tensors file ", path, ": ", e.what()));
  }
}

}  // namespace

std::vector<std::string> TensorFileKeys() {
  std::vector<std::string> keys(std::begin(kRequired), std::end(kRequired));
  keys.insert(keys.end(), std::begin(kOptional), std::end(kOptional));
  return keys;
}

absl::StatusOr<Dataset> LoadTensorFile(const std::string& path, bool train) {
  return Load(path, train);
}

}  // namespace qsr
