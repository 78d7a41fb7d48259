// qsr: Local SGD with the Quadratic Synchronization Rule, for your own LibTorch training loop.
//
// Link with CMake:
//   find_package(qsr REQUIRED)            # also finds Torch, Gloo, absl, gRPC, protobuf, yaml-cpp
//   target_link_libraries(app PRIVATE qsr::qsr)
// and include this header (or the pieces below). Complete program: examples/local_sgd/main.cc;
// guide: docs/library.md.
//
// The pieces, each documented in its header. They are the ones qsr's own worker and coordinator
// use, not copies.
//
// Joining a group: qsr/distributed.h
//   InitFromEnvironment()   torchrun-style static world (RANK, WORLD_SIZE, MASTER_ADDR,
//                           MASTER_PORT); rank 0 serves the rendezvous store.
//   InitWithCoordinator()   join a qsr-coordinator run (rank assignment, rendezvous, and the
//                           rounds a LocalOptimizer reports: rounds.jsonl).
//   DistributedContext      rank(), size(), communicator(), store(), ReportRound(), Finish().
//
// Training with local steps: qsr/local_optimizer.h
//   LocalOptimizer          wraps any torch::optim::Optimizer; Step() returns whether the step
//                           ended a round (and averaged the model); H from the QSR.
//
// The schedule (pure logic: no torch, no sockets)
//   common/sync_rule.h      SyncPeriod(), SyncRuleParams: H of a round from the LR at its start.
//   common/lr_schedule.h    LrSchedule: the authors' LR schedules, from a Recipe.
//   common/round_planner.h  RoundPlanner, Round: the whole round plan of a Recipe.
//   common/recipe.h         Recipe, ParseRecipeYaml(), ResolveRecipe(): the authors' recipes.
//
// Collectives
//   worker/comm/communicator.h          Communicator: AllReduceSum, Broadcast, abort on failure.
//   worker/comm/communicator_factory.h  CreateCommunicator(): Gloo on CPU, NCCL on CUDA.
//   worker/comm/gloo_communicator.h     GlooCommunicator: the CPU implementation.
//   worker/comm/model_averager.h        ModelAverager: a model's state in one collective.
//   rendezvous/store.h                      Store, PrefixStore, InMemoryStore: rendezvous stores.
//   worker/comm/c10d_store.h            C10dStore: the static world's store, LibTorch's c10d
//                                       TCPStore (as torchrun and torch.distributed use it).
//
// Conventions throughout: errors are absl::Status (no exception escapes the library), every wait
// has a deadline, and objects that issue collectives must be used in the same order on every
// rank. Thread-safety is stated per class.
#ifndef QSR_API_QSR_QSR_H_
#define QSR_API_QSR_QSR_H_

#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "common/sync_rule.h"
#include "qsr/distributed.h"
#include "qsr/local_optimizer.h"
#include "rendezvous/store.h"
#include "worker/comm/c10d_store.h"
#include "worker/comm/communicator.h"
#include "worker/comm/communicator_factory.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/model_averager.h"

#endif  // QSR_API_QSR_QSR_H_
