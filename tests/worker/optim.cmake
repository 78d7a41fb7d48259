# Tests of worker/foreach_sgd (against torch::optim::SGD), on the CPU and, where there is one, a GPU.
qsr_test(foreach_sgd_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/foreach_sgd_test.cc
  LIBS qsr_worker_optim
)
