// Internal to worker/model: the constructors of each model family, defined one family per .cc so
// that each heavy LibTorch translation unit stays small. Use MakeModel() (models.h) instead.
//
// These functions may throw c10::Error or std::exception (MakeModel() catches them); their
// arguments are validated by the caller.
#ifndef QSR_WORKER_MODEL_FAMILIES_H_
#define QSR_WORKER_MODEL_FAMILIES_H_

#include <cstdint>
#include <memory>

#include "worker/model/models.h"

namespace qsr::model_internal {

// torchvision's ResNet of depth 18, 34, 50, 101 or 152 (REQUIRES: one of those).
std::shared_ptr<Model> NewResNet(int depth, int64_t num_classes, const ModelInput& input);

// vit-pytorch's SimpleViT. REQUIRES: config and input validated (sides multiples of the patch,
// dim a multiple of 4 and >= 8, every size >= 1).
std::shared_ptr<Model> NewSimpleVit(const VitConfig& config, int64_t num_classes,
                                    const ModelInput& input);

}  // namespace qsr::model_internal

#endif  // QSR_WORKER_MODEL_FAMILIES_H_
