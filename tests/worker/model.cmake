# Tests of worker/model.
qsr_test(worker_models_test SOURCES models_test.cc LIBS qsr_worker_model)
