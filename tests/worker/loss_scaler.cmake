# Tests of worker/loss_scaler (the fp16 loss scaler's retry logic), pure logic.
qsr_test(loss_scaler_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/loss_scaler_test.cc
  LIBS qsr_worker_loss_scaler GTest::gmock
)
