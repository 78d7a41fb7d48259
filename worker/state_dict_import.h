// Loading initial weights (init_model_path) from files PyTorch wrote.
//
// LoadInitialWeights tries, in order:
//   1. a LibTorch archive (our own checkpoints: SaveModule);
//   2. a torch.save'd dict of parameter and buffer names to tensors in PyTorch's zip format
//      (PyTorch >= 1.6, the default), read with torch::pickle_load; a "module." prefix
//      (DistributedDataParallel) is dropped. LibTorch cannot unpickle the OrderedDict that
//      model.state_dict() returns (it reads every OrderedDict as None): such a file gets an error
//      asking for torch.save(dict(model.state_dict()), path);
//   3. a TorchScript module (torch.jit.save), whose parameters and buffers are copied by name.
// Names follow torchvision's (our models register the same names), e.g. "layer1.0.conv1.weight".
// Loading is strict, as load_state_dict(strict=True): every parameter and buffer of the model
// must be present with the same shape, and nothing else. Errors name the file, then the missing,
// unexpected or mismatched entries, or why none of the three formats could read it (e.g. a
// legacy non-zip torch.save, or a pickled whole module, which need Python).
//
// Not thread-safe (writes the module); nothing throws.
#ifndef QSR_WORKER_STATE_DICT_IMPORT_H_
#define QSR_WORKER_STATE_DICT_IMPORT_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace qsr {

absl::Status LoadInitialWeights(torch::nn::Module& module, const std::string& path);

}  // namespace qsr

#endif  // QSR_WORKER_STATE_DICT_IMPORT_H_
