# Tests of worker/data: sampler, IDX and CIFAR loading, augmentation, mixup, JPEG folders, batch
# loader.
find_package(ZLIB REQUIRED)  # the IDX test writes gzip files
qsr_test(worker_sampler_test SOURCES sampler_test.cc LIBS qsr_worker_data)
qsr_test(worker_fashion_mnist_test SOURCES fashion_mnist_test.cc LIBS qsr_worker_data ZLIB::ZLIB)
qsr_test(worker_batch_loader_test SOURCES batch_loader_test.cc LIBS qsr_worker_data)
qsr_test(worker_cifar_test SOURCES cifar_test.cc LIBS qsr_worker_data)
qsr_test(worker_image_folder_test SOURCES image_folder_test.cc LIBS qsr_worker_data)
# The "tensors" dataset: the test writes its files with python3 and torch (python3-torch).
qsr_test(worker_tensor_file_test SOURCES tensor_file_test.cc LIBS qsr_worker_data)
target_compile_definitions(worker_tensor_file_test PRIVATE QSR_PYTHON="${QSR_TORCH_PYTHON}"
  QSR_TESTDATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/testdata")
# RandAugment's operations against Pillow: the test runs python3 with PIL (python3-pil).
qsr_test(worker_rand_augment_test SOURCES rand_augment_test.cc LIBS qsr_worker_data)
target_compile_definitions(worker_rand_augment_test PRIVATE QSR_PYTHON="${QSR_TORCH_PYTHON}")
