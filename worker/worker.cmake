# Mixed precision (autocast). Linked with qsr_worker_comm for its QSR_HAVE_NCCL definition and the
# CUDA runtime that comes with it (to check a GPU's bfloat16 support).
add_library(qsr_worker_precision ${CMAKE_CURRENT_LIST_DIR}/precision.cc)
target_include_directories(qsr_worker_precision PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr_worker_precision PUBLIC qsr_worker_comm ${TORCH_LIBRARIES} absl::status
  absl::strings)

# The fp16 loss scaler (pure logic).
add_library(qsr_worker_loss_scaler ${CMAKE_CURRENT_LIST_DIR}/loss_scaler.cc)
target_include_directories(qsr_worker_loss_scaler PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr_worker_loss_scaler PUBLIC absl::status absl::statusor absl::strings
  glog::glog)

# SGD with multi-tensor updates (used by the trainer and qsr-bench-step).
add_library(qsr_worker_optim ${CMAKE_CURRENT_LIST_DIR}/foreach_sgd.cc
  ${CMAKE_CURRENT_LIST_DIR}/clear_gradients.cc)
target_include_directories(qsr_worker_optim PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr_worker_optim PUBLIC ${TORCH_LIBRARIES})

# A process's membership in a coordinator's run (join, heartbeats, rendezvous keys, leave): the
# worker's and the qsr library's.
add_library(qsr_worker_group ${CMAKE_CURRENT_LIST_DIR}/joined_group.cc)
target_include_directories(qsr_worker_group PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
  $<INSTALL_INTERFACE:include>)
target_link_libraries(qsr_worker_group PUBLIC qsr_client qsr_worker_comm qsr_common glog::glog
  absl::random_random absl::synchronization)

# How the members of a group keep their models together round by round (RoundSync: the model's
# average, AdamW's moments, gradient buckets, overlap) and the parameters' digest a round report
# carries: the worker's and the qsr library's LocalOptimizer's, so installed with the library.
add_library(qsr_worker_sync ${CMAKE_CURRENT_LIST_DIR}/round_sync.cc
  ${CMAKE_CURRENT_LIST_DIR}/adam_moments.cc ${CMAKE_CURRENT_LIST_DIR}/params_digest.cc)
target_include_directories(qsr_worker_sync PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
  $<INSTALL_INTERFACE:include>)
target_link_libraries(qsr_worker_sync PUBLIC qsr_worker_comm qsr_proto ${TORCH_LIBRARIES}
  absl::status absl::statusor)

# The trainer library (used by qsr-worker and the integration tests) and the worker binary.
add_library(qsr_trainer
  ${CMAKE_CURRENT_LIST_DIR}/trainer.cc
  ${CMAKE_CURRENT_LIST_DIR}/training_setup.cc
  ${CMAKE_CURRENT_LIST_DIR}/optimizer_factory.cc
  ${CMAKE_CURRENT_LIST_DIR}/evaluator.cc
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cc
  ${CMAKE_CURRENT_LIST_DIR}/state_snapshot.cc
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_writer.cc
  ${CMAKE_CURRENT_LIST_DIR}/training_loss.cc
  ${CMAKE_CURRENT_LIST_DIR}/state_dict_import.cc
  ${CMAKE_CURRENT_LIST_DIR}/model_export.cc
  ${CMAKE_CURRENT_LIST_DIR}/model_snapshotter.cc
)
target_include_directories(qsr_trainer PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr_trainer PUBLIC qsr_common qsr_client qsr_worker_group qsr_worker_sync
  qsr_worker_comm
  qsr_worker_precision qsr_worker_loss_scaler qsr_worker_optim qsr_worker_data qsr_worker_model qsr_log qsr_checkpoint_manifest
  ${TORCH_LIBRARIES} glog::glog absl::random_random)

add_executable(qsr-worker ${CMAKE_CURRENT_LIST_DIR}/worker_main.cc)
target_link_libraries(qsr-worker PRIVATE qsr_trainer qsr_heap_policy)

# A checkpoint's weights as a PyTorch state dict (what `qsrctl export` runs).
add_executable(qsr-export ${CMAKE_CURRENT_LIST_DIR}/export_main.cc)
target_link_libraries(qsr-export PRIVATE qsr_trainer)
