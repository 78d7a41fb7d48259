// Compiles LibTorch's headers once as a precompiled header that every LibTorch-using target of
// the build reuses (see QSR_TORCH_PCH in the top-level CMakeLists.txt).
#include <torch/torch.h>
