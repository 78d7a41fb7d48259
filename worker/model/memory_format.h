// The memory format of a model's 4-D tensors (convolution weights): NCHW ("contiguous") or NHWC
// ("channels_last").
//
// Why: with channels_last, oneDNN runs convolutions, batch norm and pooling without reordering
// between layouts. Measured on the CPU with Debian's LibTorch 1.13 (`qsr-bench-step
// --memory-format`, bench/FINDINGS.md): the `cnn` trains about 30% faster, the CIFAR ResNet-18
// about 20% slower, so it is a recipe choice (`memory_format`), not the default.
//
// Stateless; thread-compatible (a module must not be converted while another thread uses it).
#ifndef QSR_WORKER_MODEL_MEMORY_FORMAT_H_
#define QSR_WORKER_MODEL_MEMORY_FORMAT_H_

#include <torch/torch.h>

namespace qsr {

// Re-lays every 4-D parameter and buffer of `module` out as channels_last, in place: the
// TensorImpls stay, so optimizer state and module references stay valid, but anything that
// binds their memory (ModelAverager) must be created afterwards. Returns how many tensors it
// converted (0 for models without 4-D tensors).
int ConvertToChannelsLast(torch::nn::Module& module);

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_MEMORY_FORMAT_H_
