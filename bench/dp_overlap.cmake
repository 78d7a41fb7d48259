# qsr-bench-dp-overlap: data-parallel step time with and without all-reduce/backward overlap
# (GradientBucketer), 2 Gloo ranks in one process. Included by bench/CMakeLists.txt.
add_executable(qsr-bench-dp-overlap ${CMAKE_CURRENT_LIST_DIR}/dp_overlap_bench.cc)
target_include_directories(qsr-bench-dp-overlap PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(qsr-bench-dp-overlap PRIVATE qsr_worker_comm qsr_worker_model qsr_common
  ${TORCH_LIBRARIES} absl::strings absl::str_format)
if(COMMAND qsr_link_libstdcxx_first)  # see worker/comm/CMakeLists.txt
  qsr_link_libstdcxx_first(qsr-bench-dp-overlap PRIVATE)
endif()
