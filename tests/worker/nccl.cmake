# Tests of the NCCL communicator (included from tests/worker/CMakeLists.txt), built whenever
# worker/comm built it (CUDA toolkit and NCCL found). The GPU cases skip without a CUDA device.
get_target_property(_qsr_comm_defs qsr_worker_comm INTERFACE_COMPILE_DEFINITIONS)
if("QSR_HAVE_NCCL" IN_LIST _qsr_comm_defs)
  qsr_test(nccl_communicator_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/nccl_communicator_test.cc
    LIBS qsr_worker_comm qsr_common GTest::gmock
  )
endif()
