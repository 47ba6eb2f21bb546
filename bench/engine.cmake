# Benchmarks (not tests): bench/run.sh builds models and runs them, writing JSON to bench/results/.
add_executable(bench_engine ${CMAKE_CURRENT_LIST_DIR}/bench_engine.c)
target_include_directories(bench_engine PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_engine PRIVATE specreason m)
sr_target_setup(bench_engine)
add_executable(bench_specdecode ${CMAKE_CURRENT_LIST_DIR}/bench_specdecode.c)
target_include_directories(bench_specdecode PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_specdecode PRIVATE specreason m)
sr_target_setup(bench_specdecode)
