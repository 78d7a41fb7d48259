# Tests of the trainer's parts (worker/*.cc): the training loss with mixup, committed checkpoints,
# loading PyTorch-saved initial weights.
qsr_test(worker_training_loss_test SOURCES training_loss_test.cc LIBS qsr_trainer)
qsr_test(worker_state_dict_import_test SOURCES state_dict_import_test.cc LIBS qsr_trainer)
target_compile_definitions(worker_state_dict_import_test PRIVATE
  QSR_TESTDATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/testdata")
# A Python-scripted model trained as TorchScript; its export files (testdata: the Python side).
qsr_test(worker_torchscript_model_test SOURCES torchscript_model_test.cc LIBS qsr_trainer)
target_compile_definitions(worker_torchscript_model_test PRIVATE
  QSR_TESTDATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/testdata")
# The worker's protocol against tests/client/fake_coordinator.h: rounds and reports, a refused join,
# regrouping when the coordinator ends a generation (workers as threads).
qsr_test(worker_trainer_test HEAVY SOURCES trainer_test.cc LIBS qsr_trainer qsr_fake_coordinator)
# Weight snapshots for time-to-accuracy curves: the interval rule, files, the paused clock.
qsr_test(worker_model_snapshotter_test SOURCES model_snapshotter_test.cc LIBS qsr_trainer)
# RoundSync over two in-process Gloo ranks.
qsr_test(worker_round_sync_test SOURCES round_sync_test.cc LIBS qsr_trainer)
