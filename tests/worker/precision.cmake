# Tests of worker/precision (autocast), on the CPU.
qsr_test(precision_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/precision_test.cc
  LIBS qsr_worker_precision GTest::gmock
)
