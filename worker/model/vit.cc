// vit-pytorch's SimpleViT ("Better plain ViT baselines for ImageNet-1k", Beyer et al. 2022), as
// in vit_pytorch/simple_vit.py. Module names follow it, so parameters and state_dict keys line up:
//   to_patch_embedding.{1: LayerNorm(patch_dim), 2: Linear(patch_dim, dim), 3: LayerNorm(dim)}
//   transformer.layers.<i>.0.{norm, to_qkv, to_out}   (attention; Linear layers without bias)
//   transformer.layers.<i>.1.net.{0: LayerNorm, 1: Linear(dim, mlp), 3: Linear(mlp, dim)}
//   linear_head.{0: LayerNorm(dim), 1: Linear(dim, num_classes)}
// (Index 0 of to_patch_embedding is the parameter-free Rearrange and index 2 of net the GELU.)
#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/version.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "worker/model/families.h"

namespace qsr::model_internal {
namespace {

namespace nn = torch::nn;

nn::LayerNorm Norm(int64_t dim) { return nn::LayerNorm(nn::LayerNormOptions({dim})); }

// vit-pytorch's posemb_sincos_2d(h, w, dim): for the patch in row y, column x,
//   [sin(x * w_k), cos(x * w_k), sin(y * w_k), cos(y * w_k)],  w_k = 10000^(-k / (dim/4 - 1)),
// k in [0, dim/4); rows of the (h * w) x dim result follow the patches in row-major order.
torch::Tensor PosEmbSinCos2d(int64_t h, int64_t w, int64_t dim) {
  // Computed in float32, as the reference does.
  const int64_t quarter = dim / 4;
  torch::Tensor omega = torch::arange(quarter, torch::kFloat32) / static_cast<double>(quarter - 1);
  omega = torch::pow(10000.0, omega).reciprocal();
  torch::Tensor ys = torch::arange(h, torch::kFloat32).repeat_interleave(w);  // row of each patch
  torch::Tensor xs = torch::arange(w, torch::kFloat32).repeat({h});  // column of each patch
  torch::Tensor y = ys.unsqueeze(1) * omega.unsqueeze(0);
  torch::Tensor x = xs.unsqueeze(1) * omega.unsqueeze(0);
  return torch::cat({x.sin(), x.cos(), y.sin(), y.cos()}, 1);
}

class Attention : public nn::Module {
 public:
  Attention(int64_t dim, int64_t heads, int64_t dim_head)
      : heads_(heads),
        scale_(1.0 / std::sqrt(static_cast<double>(dim_head))),
        norm_(register_module("norm", Norm(dim))),
        to_qkv_(register_module(
            "to_qkv", nn::Linear(nn::LinearOptions(dim, heads * dim_head * 3).bias(false)))),
        to_out_(register_module(
            "to_out", nn::Linear(nn::LinearOptions(heads * dim_head, dim).bias(false)))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), n = x.size(1);
    // b n (3 h d) -> 3 b h n d
    torch::Tensor qkv =
        to_qkv_->forward(norm_->forward(x)).view({b, n, 3, heads_, -1}).permute({2, 0, 3, 1, 4});
    torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
#if TORCH_VERSION_MAJOR >= 2
    // The fused kernel (flash / memory-efficient attention on a GPU) computes the same
    // softmax(q k^T / sqrt(d)) v.
    torch::Tensor out = at::scaled_dot_product_attention(q, k, v);
#else
    torch::Tensor out = torch::matmul(q, k.transpose(-1, -2)).mul_(scale_).softmax(-1).matmul(v);
#endif
    // b h n d -> b n (h d)
    return to_out_->forward(out.transpose(1, 2).reshape({b, n, -1}));
  }

 private:
  const int64_t heads_;
  [[maybe_unused]] const double scale_;
  nn::LayerNorm norm_;
  nn::Linear to_qkv_, to_out_;
};

// net: 0 LayerNorm, 1 Linear, (2 GELU), 3 Linear.
class FeedForward : public nn::Module {
 public:
  FeedForward(int64_t dim, int64_t hidden) {
    auto net = std::make_shared<nn::Module>("Sequential");
    norm_ = net->register_module("0", Norm(dim));
    fc1_ = net->register_module("1", nn::Linear(dim, hidden));
    fc2_ = net->register_module("3", nn::Linear(hidden, dim));
    register_module("net", net);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return fc2_->forward(torch::gelu(fc1_->forward(norm_->forward(x))));
  }

 private:
  nn::LayerNorm norm_{nullptr};
  nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

class SimpleVit : public Model {
 public:
  SimpleVit(const VitConfig& c, int64_t num_classes, const ModelInput& input)
      : Model("SimpleViT"), patch_(c.patch) {
    const int64_t patch_dim = input.channels * c.patch * c.patch;
    auto embed = std::make_shared<nn::Module>("Sequential");
    patch_norm_ = embed->register_module("1", Norm(patch_dim));
    patch_linear_ = embed->register_module("2", nn::Linear(patch_dim, c.dim));
    embed_norm_ = embed->register_module("3", Norm(c.dim));
    register_module("to_patch_embedding", embed);

    auto transformer = std::make_shared<nn::Module>("Transformer");
    nn::ModuleList layers;
    for (int64_t i = 0; i < c.depth; ++i) {
      nn::ModuleList pair;
      auto attention = std::make_shared<Attention>(c.dim, c.heads, c.dim_head);
      auto feed_forward = std::make_shared<FeedForward>(c.dim, c.mlp_dim);
      pair->push_back(attention);
      pair->push_back(feed_forward);
      layers->push_back(pair);
      attention_.push_back(attention);
      feed_forward_.push_back(feed_forward);
    }
    transformer->register_module("layers", layers);
    register_module("transformer", transformer);

    auto head = std::make_shared<nn::Module>("Sequential");
    head_norm_ = head->register_module("0", Norm(c.dim));
    head_linear_ = head->register_module("1", nn::Linear(c.dim, num_classes));
    register_module("linear_head", head);

    pos_master_ = PosEmbSinCos2d(input.height / c.patch, input.width / c.patch, c.dim);
    pos_ = pos_master_;
  }

  torch::Tensor forward(torch::Tensor x) override {
    const int64_t b = x.size(0), ch = x.size(1), p = patch_;
    const int64_t h = x.size(2) / p, w = x.size(3) / p;
    // b c (h p1) (w p2) -> b (h w) (p1 p2 c)
    x = x.reshape({b, ch, h, p, w, p}).permute({0, 2, 4, 3, 5, 1}).reshape({b, h * w, p * p * ch});
    x = embed_norm_->forward(patch_linear_->forward(patch_norm_->forward(x)));
    // The position embedding is a constant (as in vit-pytorch), kept on the device and in the
    // dtype of the activations.
    if (pos_.device() != x.device() || pos_.scalar_type() != x.scalar_type()) {
      pos_ = pos_master_.to(x.device(), x.scalar_type());
    }
    x = x + pos_;
    for (size_t i = 0; i < attention_.size(); ++i) {
      x = attention_[i]->forward(x) + x;
      x = feed_forward_[i]->forward(x) + x;
    }
    return head_linear_->forward(head_norm_->forward(x.mean(1)));
  }

 private:
  const int64_t patch_;
  nn::LayerNorm patch_norm_{nullptr}, embed_norm_{nullptr}, head_norm_{nullptr};
  nn::Linear patch_linear_{nullptr}, head_linear_{nullptr};
  std::vector<std::shared_ptr<Attention>> attention_;
  std::vector<std::shared_ptr<FeedForward>> feed_forward_;
  // (h*w) x dim, not registered: a constant, as in vit-pytorch. pos_master_ is the float32 CPU
  // original; pos_ its copy on the device and in the dtype of the last input.
  torch::Tensor pos_master_, pos_;
};

}  // namespace

std::shared_ptr<Model> NewSimpleVit(const VitConfig& config, int64_t num_classes,
                                    const ModelInput& input) {
  return std::make_shared<SimpleVit>(config, num_classes, input);
}

}  // namespace qsr::model_internal
