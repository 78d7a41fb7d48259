// StateSnapshot: a copy of a worker's training state (the model's parameters and buffers and the
// optimizer's per-parameter state) taken after every completed averaging round, on the training
// device. When the worker's group fails, it returns to this state, which is the last one every
// member agreed on, and joins the next generation saying which round the state is ready for.
//
// Restore() writes back in place: the tensors keep their identity, so averagers and optimizer
// references to them stay valid. Capture() reuses the memory of the previous copy.
//
// Thread-compatible: call from the training thread, between steps.
#ifndef QSR_WORKER_STATE_SNAPSHOT_H_
#define QSR_WORKER_STATE_SNAPSHOT_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace qsr {

class StateSnapshot {
 public:
  // Copies the current state; `next_round` is the round it is ready to train.
  absl::Status Capture(torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                       int64_t next_round);
  // Puts the captured state back. FAILED_PRECONDITION when nothing was captured.
  absl::Status Restore(torch::nn::Module& model, torch::optim::Optimizer& optimizer) const;

  bool empty() const { return next_round_ < 0; }
  int64_t next_round() const { return next_round_; }

 private:
  struct ParamState {
    bool present = false;  // the optimizer had state for the parameter
    std::vector<torch::Tensor> tensors;
    int64_t step = 0;
  };
  std::vector<torch::Tensor> module_;  // parameters, then buffers
  std::vector<ParamState> optimizer_;  // by parameter, in model.parameters() order
  int64_t next_round_ = -1;
};

}  // namespace qsr

#endif  // QSR_WORKER_STATE_SNAPSHOT_H_
