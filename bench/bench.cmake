# qsr-bench-step: a plain training-step loop (forward, backward, SGD step) on synthetic data that
# already lives on the device, for comparing LibTorch C++ with Python PyTorch (train_step_bench.py)
# on the same GPU, model and batch. Included by bench/CMakeLists.txt, or deferred to the end of
# the top-level CMakeLists by scripts/gpu-check.sh when the top level does not add bench/.
add_executable(qsr-bench-step ${CMAKE_CURRENT_LIST_DIR}/train_step_bench.cc)
target_include_directories(qsr-bench-step PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr-bench-step PRIVATE qsr_worker_model qsr_worker_optim qsr_heap_policy qsr_common
  ${TORCH_LIBRARIES}
  absl::strings absl::str_format)
if(COMMAND qsr_link_libstdcxx_first)  # see worker/comm/CMakeLists.txt
  qsr_link_libstdcxx_first(qsr-bench-step PRIVATE)
endif()
