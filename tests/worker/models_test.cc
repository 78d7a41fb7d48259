#include "worker/model/models.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "worker/model/memory_format.h"

namespace qsr {
namespace {

std::shared_ptr<Model> Make(const std::string& name, uint64_t seed) {
  torch::manual_seed(seed);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel(name);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

TEST(ModelsTest, ParameterCounts) {
  EXPECT_EQ(NumParameters(*Make("mlp", 0)), 669706);
  EXPECT_EQ(NumParameters(*Make("cnn", 0)), 824650);
}

TEST(ModelsTest, OutputShapesAndBackward) {
  // Every family on Fashion-MNIST-size input (the larger ResNets and vit_b16 are covered below).
  for (const std::string name : {"mlp", "cnn", "resnet18", "resnet50", "vit", "vit_small"}) {
    std::shared_ptr<Model> model = Make(name, 1);
    ASSERT_NE(model, nullptr);
    EXPECT_TRUE(model->is_training());
    const torch::Tensor x = torch::randn({5, 1, 28, 28});
    const torch::Tensor y = torch::randint(10, {5}, torch::kLong);
    torch::Tensor logits = model->forward(x);
    EXPECT_EQ(logits.sizes(), (torch::IntArrayRef{5, 10})) << name;
    torch::nn::functional::cross_entropy(logits, y).backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << name << " " << p.key();
    }
  }
  absl::StatusOr<std::shared_ptr<Model>> wide = MakeModel("cnn", 47);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ((*wide)->forward(torch::randn({2, 1, 28, 28})).sizes(), (torch::IntArrayRef{2, 47}));
}

TEST(ModelsTest, StableParameterAndBufferOrder) {
  std::vector<std::string> names;
  for (const auto& p : Make("cnn", 0)->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias",
                                             "conv2.weight", "conv2.bias", "bn2.weight", "bn2.bias",
                                             "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  names.clear();
  for (const auto& b : Make("cnn", 0)->named_buffers()) names.push_back(b.key());
  EXPECT_EQ(names, (std::vector<std::string>{"bn1.running_mean", "bn1.running_var",
                                             "bn1.num_batches_tracked", "bn2.running_mean",
                                             "bn2.running_var", "bn2.num_batches_tracked"}));
  names.clear();
  for (const auto& p : Make("mlp", 0)->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                             "fc3.weight", "fc3.bias"}));
}

TEST(ModelsTest, IdenticalInitUnderTheSameSeed) {
  for (const std::string name : {"mlp", "cnn", "resnet18", "vit_small"}) {
    std::shared_ptr<Model> a = Make(name, 1234);
    std::shared_ptr<Model> b = Make(name, 1234);
    std::shared_ptr<Model> c = Make(name, 99);
    const std::vector<torch::Tensor> pa = a->parameters(), pb = b->parameters(),
                                     pc = c->parameters();
    ASSERT_EQ(pa.size(), pb.size());
    bool any_differs = false;
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_TRUE(torch::equal(pa[i], pb[i])) << name << " parameter " << i;
      any_differs |= !torch::equal(pa[i], pc[i]);
    }
    EXPECT_TRUE(any_differs) << name << ": a different seed should give different weights";
  }
}

TEST(ModelsTest, ChannelsLastInputGivesTheSameOutput) {
  std::shared_ptr<Model> model = Make("cnn", 3);
  model->eval();
  const torch::Tensor x = torch::randn({4, 1, 28, 28});
  const torch::Tensor a = model->forward(x);
  const torch::Tensor b = model->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5));
}

// Every 4-D tensor gets NHWC strides, also conv1's weight with one input channel (where
// contiguous(ChannelsLast) would keep NCHW strides), in the same TensorImpl; training gives
// the same results as in NCHW.
TEST(MemoryFormatTest, ConvertsEvery4DTensorInPlaceAndTrainsTheSame) {
  torch::manual_seed(9);
  std::shared_ptr<Model> nchw = Make("cnn", 10);
  torch::manual_seed(9);
  std::shared_ptr<Model> nhwc = Make("cnn", 10);
  std::vector<torch::TensorImpl*> impls;
  for (const torch::Tensor& p : nhwc->parameters()) impls.push_back(p.unsafeGetTensorImpl());
  EXPECT_EQ(ConvertToChannelsLast(*nhwc), 2);  // conv1.weight, conv2.weight
  const std::vector<torch::Tensor> params = nhwc->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].unsafeGetTensorImpl(), impls[i]) << i;
    if (params[i].dim() == 4) {
      EXPECT_TRUE(params[i].is_contiguous(torch::MemoryFormat::ChannelsLast)) << i;
      EXPECT_EQ(params[i].stride(1), 1) << i;  // channels innermost
    }
  }
  const torch::Tensor x = torch::randn({8, 1, 28, 28});
  const torch::Tensor y = torch::randint(0, 10, {8}, torch::kInt64);
  for (auto& model : {nchw, nhwc}) {
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int step = 0; step < 3; ++step) {
      sgd.zero_grad();
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      sgd.step();
    }
  }
  const std::vector<torch::Tensor> a = nchw->parameters(), b = nhwc->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5)) << i;
  }
  std::shared_ptr<Model> mlp = Make("mlp", 10);
  EXPECT_EQ(ConvertToChannelsLast(*mlp), 0);
}

std::shared_ptr<Model> MakeFor(const std::string& name, int64_t num_classes,
                               const ModelInput& input, uint64_t seed = 0) {
  torch::manual_seed(seed);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel(name, num_classes, input);
  EXPECT_TRUE(model.ok()) << name << ": " << model.status();
  return model.ok() ? *model : nullptr;
}

constexpr ModelInput kImageNet{3, 224, 224};
constexpr ModelInput kCifar{3, 32, 32};

TEST(ModelsTest, ResNetParameterCountsAreTorchvisions) {
  // torchvision.models.resnetN(num_classes=1000): sum(p.numel() for p in m.parameters()).
  const std::pair<const char*, int64_t> want[] = {{"resnet18", 11689512},
                                                  {"resnet34", 21797672},
                                                  {"resnet50", 25557032},
                                                  {"resnet101", 44549160},
                                                  {"resnet152", 60192808}};
  for (const auto& [name, count] : want) {
    std::shared_ptr<Model> model = MakeFor(name, 1000, kImageNet);
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(NumParameters(*model), count) << name;
  }
  // The small stem replaces the 7x7 conv by a 3x3 one: 64 * 3 * (49 - 9) fewer weights.
  EXPECT_EQ(NumParameters(*MakeFor("resnet18", 1000, kCifar)), 11689512 - 64 * 3 * 40);
}

TEST(ModelsTest, ResNetLayoutFollowsTorchvision) {
  std::shared_ptr<Model> model = MakeFor("resnet50", 1000, kImageNet);
  ASSERT_NE(model, nullptr);
  const auto modules = model->named_modules();
  auto conv = [&](const std::string& key) {
    EXPECT_TRUE(modules.contains(key)) << key;
    return modules[key]->as<torch::nn::Conv2d>();
  };
  // v1.5: the stride of a downsampling Bottleneck sits on its 3x3 conv.
  EXPECT_EQ((*conv("layer2.0.conv1")->options.stride())[0], 1);
  EXPECT_EQ((*conv("layer2.0.conv2")->options.stride())[0], 2);
  EXPECT_EQ((*conv("layer2.0.downsample.0")->options.stride())[0], 2);
  EXPECT_EQ(conv("conv1")->weight.sizes(), (torch::IntArrayRef{64, 3, 7, 7}));
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  ASSERT_GE(names.size(), 8u);
  EXPECT_EQ(
      std::vector<std::string>(names.begin(), names.begin() + 6),
      (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                                "layer1.0.bn1.weight", "layer1.0.bn1.bias"}));
  EXPECT_EQ(std::vector<std::string>(names.end() - 2, names.end()),
            (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_NE(std::find(names.begin(), names.end(), "layer4.2.conv3.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "layer3.0.downsample.1.bias"), names.end());
  // torchvision's init: BN weight 1, bias 0; convs kaiming-normal fan-out (std sqrt(2 / fan_out)).
  EXPECT_TRUE(torch::equal(model->named_parameters()["bn1.weight"], torch::ones({64})));
  const torch::Tensor w = conv("layer4.0.conv2")->weight;  // fan_out = 512 * 9
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (512 * 9)), 0.002);
}

TEST(ModelsTest, ResNetStemDependsOnInputSize) {
  for (const ModelInput& input : {kCifar, ModelInput{1, 28, 28}, ModelInput{3, 64, 64}}) {
    std::shared_ptr<Model> model = MakeFor("resnet18", 10, input);
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(model->named_parameters()["conv1.weight"].sizes(),
              (torch::IntArrayRef{64, input.channels, 3, 3}));
    EXPECT_EQ(model->forward(torch::randn({2, input.channels, input.height, input.width})).sizes(),
              (torch::IntArrayRef{2, 10}));
  }
  std::shared_ptr<Model> big = MakeFor("resnet18", 1000, kImageNet);
  ASSERT_NE(big, nullptr);
  big->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(big->forward(torch::randn({1, 3, 224, 224})).sizes(), (torch::IntArrayRef{1, 1000}));
  // Spatial sizes: 224 -> stem 56 -> layer4 7; 96 also goes through the ImageNet stem.
  EXPECT_EQ(
      MakeFor("resnet18", 3, ModelInput{3, 96, 96})->forward(torch::randn({1, 3, 96, 96})).sizes(),
      (torch::IntArrayRef{1, 3}));
}

TEST(ModelsTest, VitB16ParameterCount) {
  // vit-pytorch SimpleViT(image_size=224, patch_size=16, num_classes=1000, dim=768, depth=12,
  // heads=12, mlp_dim=3072), dim_head 64:
  //   patch embedding: LayerNorm(768) 1,536 + Linear(768, 768) 590,592 + LayerNorm(768) 1,536
  //                    = 593,664 (patch_dim = 3 * 16 * 16 = 768)
  //   per block:       attention LayerNorm 1,536 + to_qkv 768 * 2304 = 1,769,472 + to_out
  //                    768 * 768 = 589,824; feed-forward LayerNorm 1,536 + Linear(768, 3072)
  //                    2,362,368 + Linear(3072, 768) 2,360,064; = 7,084,800, x 12 = 85,017,600
  //   head:            LayerNorm(768) 1,536 + Linear(768, 1000) 769,000 = 770,536
  //   total            86,381,800 (the position embedding is a constant, not a parameter)
  std::shared_ptr<Model> model = MakeFor("vit_b16", 1000, kImageNet);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(NumParameters(*model), 86381800);
  EXPECT_TRUE(model->named_buffers().is_empty());
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(torch::randn({1, 3, 224, 224})).sizes(), (torch::IntArrayRef{1, 1000}));
  // "vit" picks vit_b16 for large inputs and vit_small for small ones.
  EXPECT_EQ(NumParameters(*MakeFor("vit", 1000, kImageNet)), 86381800);
  std::shared_ptr<Model> small = MakeFor("vit", 10, kCifar);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(NumParameters(*small), NumParameters(*MakeFor("vit_small", 10, kCifar)));
}

TEST(ModelsTest, VitNamesFollowVitPytorch) {
  std::shared_ptr<Model> model = MakeFor("vit_small", 10, kCifar);
  ASSERT_NE(model, nullptr);
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  const std::vector<std::string> head = {
      "to_patch_embedding.1.weight",          "to_patch_embedding.1.bias",
      "to_patch_embedding.2.weight",          "to_patch_embedding.2.bias",
      "to_patch_embedding.3.weight",          "to_patch_embedding.3.bias",
      "transformer.layers.0.0.norm.weight",   "transformer.layers.0.0.norm.bias",
      "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.0.to_out.weight",
      "transformer.layers.0.1.net.0.weight",  "transformer.layers.0.1.net.0.bias",
      "transformer.layers.0.1.net.1.weight",  "transformer.layers.0.1.net.1.bias",
      "transformer.layers.0.1.net.3.weight",  "transformer.layers.0.1.net.3.bias"};
  ASSERT_GE(names.size(), head.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + head.size()), head);
  EXPECT_EQ(std::vector<std::string>(names.end() - 4, names.end()),
            (std::vector<std::string>{"linear_head.0.weight", "linear_head.0.bias",
                                      "linear_head.1.weight", "linear_head.1.bias"}));
  EXPECT_EQ(names.size(), 6 + 6 * 10 + 4u);  // 6 blocks of 10 tensors
  EXPECT_EQ(NumParameters(*model), 1789738);
}

// vit-pytorch's SimpleViT forward, written out independently (explicit loops for the patch layout
// and the position embedding) from the parameters of `model`.
torch::Tensor ReferenceVit(Model& model, const VitConfig& c, const torch::Tensor& img) {
  namespace F = torch::nn::functional;
  auto params = model.named_parameters();
  auto P = [&](const std::string& k) { return params[k]; };
  const int64_t b = img.size(0), ch = img.size(1), p = c.patch;
  const int64_t h = img.size(2) / p, w = img.size(3) / p, n = h * w, pd = p * p * ch;
  torch::Tensor x = torch::zeros({b, n, pd});
  auto xa = x.accessor<float, 3>();
  auto ia = img.accessor<float, 4>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t py = 0; py < h; ++py)
      for (int64_t px = 0; px < w; ++px)
        for (int64_t p1 = 0; p1 < p; ++p1)
          for (int64_t p2 = 0; p2 < p; ++p2)
            for (int64_t cc = 0; cc < ch; ++cc)
              xa[i][py * w + px][(p1 * p + p2) * ch + cc] = ia[i][cc][py * p + p1][px * p + p2];
  auto ln = [&](const torch::Tensor& t, const std::string& k) {
    return F::layer_norm(
        t, F::LayerNormFuncOptions({t.size(-1)}).weight(P(k + ".weight")).bias(P(k + ".bias")));
  };
  auto lin = [&](const torch::Tensor& t, const std::string& k, bool bias = true) {
    return F::linear(t, P(k + ".weight"), bias ? P(k + ".bias") : torch::Tensor());
  };
  x = ln(lin(ln(x, "to_patch_embedding.1"), "to_patch_embedding.2"), "to_patch_embedding.3");
  torch::Tensor pe = torch::zeros({n, c.dim});
  const int64_t q = c.dim / 4;
  for (int64_t py = 0; py < h; ++py) {
    for (int64_t px = 0; px < w; ++px) {
      for (int64_t k = 0; k < q; ++k) {
        const double omega = 1.0 / std::pow(10000.0, static_cast<double>(k) / (q - 1));
        pe[py * w + px][k] = std::sin(px * omega);
        pe[py * w + px][q + k] = std::cos(px * omega);
        pe[py * w + px][2 * q + k] = std::sin(py * omega);
        pe[py * w + px][3 * q + k] = std::cos(py * omega);
      }
    }
  }
  x = x + pe;
  for (int64_t l = 0; l < c.depth; ++l) {
    const std::string a = "transformer.layers." + std::to_string(l) + ".0";
    const std::string f = "transformer.layers." + std::to_string(l) + ".1.net";
    std::vector<torch::Tensor> qkv = lin(ln(x, a + ".norm"), a + ".to_qkv", false).chunk(3, -1);
    for (torch::Tensor& t : qkv) t = t.reshape({b, n, c.heads, c.dim_head}).permute({0, 2, 1, 3});
    torch::Tensor attn =
        (torch::matmul(qkv[0], qkv[1].transpose(-1, -2)) / std::sqrt(double(c.dim_head)))
            .softmax(-1);
    torch::Tensor out = torch::matmul(attn, qkv[2]).permute({0, 2, 1, 3}).reshape({b, n, -1});
    x = lin(out, a + ".to_out", false) + x;
    x = lin(torch::gelu(lin(ln(x, f + ".0"), f + ".1")), f + ".3") + x;
  }
  return lin(ln(x.mean(1), "linear_head.0"), "linear_head.1");
}

TEST(ModelsTest, VitMatchesReferenceForward) {
  VitConfig c;
  c.patch = 2;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.dim_head = 8;
  c.mlp_dim = 24;
  const ModelInput input{3, 4, 6};  // 2 x 3 patches: rows and columns differ
  torch::manual_seed(5);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeSimpleVit(c, 7, input);
  ASSERT_TRUE(model.ok()) << model.status();
  torch::NoGradGuard no_grad;
  const torch::Tensor img = torch::randn({3, 3, 4, 6});
  const torch::Tensor got = (*model)->forward(img);
  const torch::Tensor want = ReferenceVit(**model, c, img);
  ASSERT_EQ(got.sizes(), (torch::IntArrayRef{3, 7}));
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-5)) << got << want;
  // The position embedding follows the dtype of the input, from its float32 original each time.
  (*model)->to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose((*model)->forward(img.to(torch::kFloat64)).to(torch::kFloat32), want,
                              1e-4, 1e-5));
  (*model)->to(torch::kFloat32);
  EXPECT_TRUE(torch::equal((*model)->forward(img), got));
}

TEST(ModelsTest, SmallVitTrainsOnFixedBatch) {
  for (const ModelInput& input : {kCifar, ModelInput{1, 28, 28}}) {
    std::shared_ptr<Model> model = MakeFor("vit_small", 10, input, 3);
    ASSERT_NE(model, nullptr);
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
    const torch::Tensor x = torch::randn({16, input.channels, input.height, input.width});
    const torch::Tensor y = torch::arange(16, torch::kLong).remainder(10);
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      opt.zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, first * 0.8) << input.height;
  }
}

TEST(ModelsTest, InputsTheModelCannotTake) {
  EXPECT_EQ(MakeModel("vit_small", 10, ModelInput{3, 30, 30}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeModel("vit_b16", 10, kCifar).status().code(), absl::StatusCode::kOk);
  EXPECT_EQ(MakeModel("vit_b16", 10, ModelInput{3, 28, 28}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeModel("cnn", 10, ModelInput{3, 30, 30}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeModel("resnet18", 10, ModelInput{0, 32, 32}).status().code(),
            absl::StatusCode::kInvalidArgument);
  VitConfig odd;
  odd.dim = 30;  // not a multiple of 4
  EXPECT_EQ(MakeSimpleVit(odd, 10, kImageNet).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VitPreset("vit_huge").status().code(), absl::StatusCode::kInvalidArgument);
  // mlp and cnn adapt to the input; their Fashion-MNIST counts are unchanged.
  EXPECT_EQ(NumParameters(*MakeFor("mlp", 10, kCifar)), 669706 + 512 * (3072 - 784));
  EXPECT_EQ(MakeFor("cnn", 10, kCifar)->forward(torch::randn({2, 3, 32, 32})).sizes(),
            (torch::IntArrayRef{2, 10}));
}

TEST(ModelsTest, UnknownNameListsModels) {
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel("resnet");
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(model.status().message());
  EXPECT_NE(msg.find("resnet"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mlp, cnn"), std::string::npos) << msg;
  EXPECT_EQ(MakeModel("mlp", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qsr
