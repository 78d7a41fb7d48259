#include "worker/model/memory_format.h"

namespace qsr {

int ConvertToChannelsLast(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  int converted = 0;
  std::vector<torch::Tensor> tensors = module.parameters(/*recurse=*/true);
  for (const torch::Tensor& b : module.buffers(/*recurse=*/true)) tensors.push_back(b);
  for (torch::Tensor& t : tensors) {
    if (!t.defined() || t.dim() != 4) continue;
    // Always a copy, as Python's Module.to(memory_format=...) makes: contiguous() would keep the
    // strides of a tensor that satisfies both layouts (one input channel), and oneDNN would then
    // choose NCHW for that layer and the ones after it.
    t.set_data(t.to(t.options(), /*non_blocking=*/false, /*copy=*/true,
                    torch::MemoryFormat::ChannelsLast));
    ++converted;
  }
  return converted;
}

}  // namespace qsr
