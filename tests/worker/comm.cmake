# Tests of worker/comm (included from tests/worker/CMakeLists.txt).
qsr_test(gloo_communicator_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/gloo_communicator_test.cc
  LIBS qsr_worker_comm qsr_common absl::synchronization
)
qsr_test(model_averager_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/model_averager_test.cc
  LIBS qsr_worker_comm qsr_common
)
qsr_test(gradient_bucketer_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/gradient_bucketer_test.cc
  LIBS qsr_worker_comm qsr_common
)
qsr_test(c10d_store_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/c10d_store_test.cc
  LIBS qsr_worker_comm qsr_common qsr_test_util GTest::gmock
)
